"""Per-sample bound and FGS perturbation of one trained MLP (rule ch4_evaluate)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import mlp
    from advbounds.data import load_prepared
    from advbounds.io import write_frame
    from advbounds.settings import SearchSettings
    from advbounds.training import load_model

    s = job.settings
    frame = mlp.trained_mlp_frame(
        load_model(job.input.model), load_prepared(job.input.data), dataset=job.wildcards["dataset"],
        split=s["split"], attack=SearchSettings.from_config(s["attack"]),
        reference_attack=SearchSettings.from_config(s["reference_attack"]),
        relu_second_derivative=s["relu_second_derivative"], dtype=s["dtype"], progress=True,
    )
    write_frame(frame, job.output[0])


run_job(snakemake, main)  # noqa: F821

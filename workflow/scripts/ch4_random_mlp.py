"""One test of Table 4.2: per-sample bound and FGS perturbation of random MLPs (rule ch4_random_mlp)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import mlp
    from advbounds.io import write_frame
    from advbounds.settings import SearchSettings

    s = job.settings
    frame = mlp.random_mlp_test_frame(
        s["spec"], number=s["number"], seed=mlp.test_seed(job.seed, s["number"]), activation=s["activation"],
        attack=SearchSettings.from_config(s["attack"]),
        reference_attack=SearchSettings.from_config(s["reference_attack"]),
        relu_second_derivative=s["relu_second_derivative"], dtype=s["dtype"], progress=True,
    )
    write_frame(frame, job.output[0])


run_job(snakemake, main)  # noqa: F821

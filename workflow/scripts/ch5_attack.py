"""Per-sample minimal FGS epsilon on the whole test set (rule ch5_attack)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.data import load_prepared
    from advbounds.experiments import cnn
    from advbounds.io import write_frame
    from advbounds.settings import SearchSettings
    from advbounds.training import load_model

    data = load_prepared(job.input.data)
    model = load_model(job.input.model, job.device)
    frame = cnn.attack_frame(model, data["x_test"], data["y_test"], SearchSettings.from_config(job.settings),
                            device=job.device, progress=True)
    write_frame(frame, job.output[0])


run_job(snakemake, main)  # noqa: F821

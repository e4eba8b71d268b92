"""Per-sample theoretical bound and per-layer kappa on the whole test set (rule ch5_bounds)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.data import load_prepared
    from advbounds.experiments import cnn
    from advbounds.io import write_frame
    from advbounds.training import load_model

    data = load_prepared(job.input.data)
    model = load_model(job.input.model, job.device)
    s = job.settings
    frame = cnn.bounds_frame(model, data["x_test"], data["y_test"], device=job.device, batch_size=s["batch_size"],
                             relu_second_derivative=s["relu_second_derivative"], modes=s["modes"],
                             certify=cnn.CertifyConfig.from_config(s["certify"]), progress=True)
    write_frame(frame, job.output[0])


run_job(snakemake, main)  # noqa: F821

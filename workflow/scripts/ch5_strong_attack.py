"""Minimal-L2 attacks on one Chapter 5 network's first test samples (rule ch5_strong_attack)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.data import load_prepared
    from advbounds.experiments.strong import StrongAttackConfig, strong_attack_frame
    from advbounds.io import write_frame
    from advbounds.training import load_model

    data = load_prepared(job.input.data)
    model = load_model(job.input.model, job.device)
    config = StrongAttackConfig.from_config(job.settings)
    write_frame(strong_attack_frame(model, data["x_test"], config, device=job.device), job.output[0])


run_job(snakemake, main)  # noqa: F821

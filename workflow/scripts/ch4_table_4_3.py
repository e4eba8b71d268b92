"""Table 4.3 (rule ch4_table_4_3)."""

import logging

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import write_table
    from advbounds.experiments import mlp_summary

    s = job.settings
    frames = {dataset: pd.read_csv(path) for dataset, path in zip(s["datasets"], job.input.frames)}
    table = mlp_summary.table_4_3(frames, atol=s["violation_atol"])
    if table["Violations"].sum():
        logging.getLogger("advbounds").warning("Table 4.3: %d bound violations", table["Violations"].sum())
    write_table(table, job.output, caption=job.params["caption"])


run_job(snakemake, main)  # noqa: F821

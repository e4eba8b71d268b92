"""Table 3.1 (rule ch3_table_3_1)."""

import logging

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import write_table
    from advbounds.experiments import linear

    s = job.settings
    frames = [pd.read_csv(path) for path in job.input.tests]
    table = linear.table_3_1(s["tests"], frames, atol=s["violation_atol"], optimal_rtol=s["fgs_optimal_rtol"])
    for column in ("Violations", "Exact violations"):
        if table[column].sum():
            logging.getLogger("advbounds").warning("Table 3.1: %d bound violations (%s)", table[column].sum(), column)
    write_table(table, job.output, caption=job.params["caption"])


run_job(snakemake, main)  # noqa: F821

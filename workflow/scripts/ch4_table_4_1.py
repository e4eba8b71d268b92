"""Table 4.1: derivative bounds of the activation functions (rule ch4_table_4_1)."""

import logging

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import write_table
    from advbounds.bounds import ACTIVATION_DERIVATIVE_BOUNDS
    from advbounds.experiments import activations

    s = job.settings
    table = activations.table_4_1(s["activations"], ACTIVATION_DERIVATIVE_BOUNDS, s["relu_second_derivative"])
    atol = s["activations"]["closed_form_atol"]
    for column in ("Thesis - numeric", "Used - numeric"):
        off = activations.mismatches(table, column, atol)
        if off:
            logging.getLogger("advbounds").warning("Table 4.1: %s beyond %g for %s", column, atol, ", ".join(off))
    write_table(table, job.output, caption=job.params["caption"])


run_job(snakemake, main)  # noqa: F821

"""Chapters 3-4 beside the published numbers, with the report's verdicts (rule ch4_comparison)."""

from pathlib import Path

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import write_table
    from advbounds.report import verdict_table
    from advbounds.report.catalog import EXTRA_BY_KEY
    from advbounds.report.comparisons import Context
    from advbounds.report.sources import load_paper_values

    key = job.params["table"]
    ctx = Context(root=Path("."), paper=load_paper_values(job.input.paper_values), settings=job.settings)
    table = verdict_table.verdict_table(ctx, EXTRA_BY_KEY[key].compares)
    write_table(table, job.output, caption=verdict_table.caption(key))


run_job(snakemake, main)  # noqa: F821

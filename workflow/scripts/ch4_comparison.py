"""Chapters 3-4 beside the published numbers (rule ch4_comparison)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import write_table
    from advbounds.experiments import compare34
    from advbounds.report.sources import load_paper_values

    published = load_paper_values(job.input.paper_values)  # YAML 1.2 booleans: the column "no" stays a string
    table = compare34.comparison_table(
        published, table_3_1=pd.read_csv(job.input.table_3_1), table_4_2=pd.read_csv(job.input.table_4_2),
        table_4_3=pd.read_csv(job.input.table_4_3), accuracies=pd.read_csv(job.input.accuracies),
    )
    write_table(table, job.output, caption=compare34.CAPTION)


run_job(snakemake, main)  # noqa: F821

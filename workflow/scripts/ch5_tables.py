"""Tables 5.1, 5.2 and 5.3 (rules ch5_table_5_1, ch5_table_5_2, ch5_table_5_3)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import write_table
    from advbounds.experiments import cnn_summary

    entries = cnn_summary.load_entries(job.settings["models"], attacks=job.input.attacks,
                               bounds=job.input.get("bounds"), metrics=job.input.get("metrics"))
    label = job.params["table"]
    table = {"5_1": cnn_summary.table_5_1, "5_2": cnn_summary.table_5_2, "5_3": cnn_summary.table_5_3}[label](entries)
    write_table(table, job.output, caption=job.params["caption"])


run_job(snakemake, main)  # noqa: F821

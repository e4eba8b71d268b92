"""figures/sandwich_summary: one row per experiment (rule sandwich_summary)."""

from pathlib import Path

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import write_table
    from advbounds.experiments import sandwich
    from advbounds.report.catalog import find_extra

    frames = {Path(path).stem: pd.read_csv(path) for path in job.input.sandwiches}
    table = sandwich.summary_table(frames)
    write_table(table, job.output, caption=find_extra("sandwich_summary").caption)
    bugs = {name: sandwich.sound_violations(frame) for name, frame in frames.items()}
    bugs = {name: v for name, v in bugs.items() if v}
    if bugs:
        raise RuntimeError(f"a sound inequality of the sandwich is violated (a bug): {bugs}")


run_job(snakemake, main)  # noqa: F821

"""The robustness sandwich of one Chapter 5 network: per-sample table and figure (rule ch5_sandwich)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure
    from advbounds.experiments import sandwich
    from advbounds.experiments.cnn_summary import display_name
    from advbounds.experiments.strong import cnn_sandwich_frame
    from advbounds.io import write_frame
    from advbounds.plotting.sandwich import sandwich_figure

    frame = cnn_sandwich_frame(pd.read_csv(job.input.bounds), pd.read_csv(job.input.attacks),
                               pd.read_csv(job.input.strong))
    write_frame(frame, job.output.table)
    model = job.wildcards["model"]
    save_figure(sandwich_figure(frame, f"{display_name(model)}: lower bounds and attacks per sample"),
                job.output.figure)
    print(sandwich.describe(display_name(model), frame))


run_job(snakemake, main)  # noqa: F821

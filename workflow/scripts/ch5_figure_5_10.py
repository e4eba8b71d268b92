"""Figure 5.10: original class against adversarial class (rule ch5_figure_5_10)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import cnn_summary
    from advbounds.io import write_frame
    from advbounds.plotting import chapter5 as plots

    use_style()
    entries = cnn_summary.load_entries(job.settings["models"], attacks=job.input.attacks, metrics=job.input.metrics)
    panels, frames = {}, []
    for entry in entries:
        classes = entry["classes"]
        counts = cnn_summary.transition_counts(entry["attacks"], len(classes))
        panels[entry["name"]] = (counts, classes)
        frames.append(cnn_summary.transitions_long(counts, entry["name"], classes))
    write_frame(pd.concat(frames, ignore_index=True), job.output.counts)
    save_figure(plots.transition_heatmaps(panels), [p for p in job.output if not p.endswith(".csv")])


run_job(snakemake, main)  # noqa: F821

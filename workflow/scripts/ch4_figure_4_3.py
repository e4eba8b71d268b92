"""Figure 4.3: the regularization sweep (rule ch4_figure_4_3)."""

import json

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import mlp_summary
    from advbounds.io import write_frame
    from advbounds.plotting import chapters34

    points = []
    for path in job.input.points:
        with open(path, encoding="utf-8") as handle:
            points.append(json.load(handle))
    frame = mlp_summary.regularization_frame(points)
    write_frame(frame, job.output.data)
    use_style()
    save_figure(chapters34.figure_4_3(frame, mlp_summary.DATASET_NAMES), job.output.figure)


run_job(snakemake, main)  # noqa: F821

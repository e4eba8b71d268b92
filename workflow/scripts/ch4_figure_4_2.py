"""Figure 4.2: deviations of the trained MLPs (rule ch4_figure_4_2)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import mlp_summary
    from advbounds.plotting import chapters34

    frame = pd.concat([pd.read_csv(path) for path in job.input.frames], ignore_index=True)
    long = mlp_summary.deviations_long(frame, ["dataset"])
    long["Dataset"] = long["dataset"].map(lambda d: mlp_summary.DATASET_NAMES.get(d, d))
    order = [mlp_summary.DATASET_NAMES.get(d, d) for d in job.settings["datasets"]]
    use_style()
    fig = chapters34.deviation_boxplots(long, x="Dataset", y="deviation", hue="kind", order=order,
                                        xlabel="data set", ylabel="FGS norm - bound", symlog=job.settings["symlog"])
    save_figure(fig, job.output)


run_job(snakemake, main)  # noqa: F821

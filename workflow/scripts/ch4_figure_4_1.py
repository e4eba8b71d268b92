"""Figure 4.1: per-MLP average deviations (rule ch4_figure_4_1)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import mlp_summary
    from advbounds.plotting import chapters34

    frame = pd.concat([pd.read_csv(path) for path in job.input.tests], ignore_index=True)
    use_style()
    fig = chapters34.deviation_boxplots(mlp_summary.mlp_average_deviations(frame), x="test", y="mean_deviation", hue="kind",
                                        xlabel="test (Table 4.2)", ylabel="average FGS norm - bound per MLP",
                                        symlog=job.settings["symlog"])
    save_figure(fig, job.output)


run_job(snakemake, main)  # noqa: F821

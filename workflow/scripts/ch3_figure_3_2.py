"""Figure 3.2: deviations of the linear classifiers (rule ch3_figure_3_2)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import linear
    from advbounds.plotting import chapters34

    use_style()
    data = linear.deviations_long([pd.read_csv(path) for path in job.input.tests])
    fig = chapters34.deviation_boxplots(data, x="test", y="value", hue="kind", xlabel="test (Table 3.1)",
                                        ylabel="perturbation norm - bound")
    save_figure(fig, job.output)


run_job(snakemake, main)  # noqa: F821

"""Figure 5.11: boxplots of the FGS epsilon per network (rule ch5_figure_5_11)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import cnn_summary
    from advbounds.plotting import chapter5 as plots

    use_style()
    panels = {}
    for model, path in zip(job.settings["models"], job.input.attacks):
        attacks = pd.read_csv(path)
        panels[cnn_summary.display_name(model)] = attacks.loc[attacks["flipped"].astype(bool), "eps"].to_numpy()
    save_figure(plots.epsilon_boxplots(panels), job.output)


run_job(snakemake, main)  # noqa: F821

"""Figure 5.13: relative robustness increase against the number of layers (rule ch5_figure_5_13)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import cnn_summary
    from advbounds.io import write_frame
    from advbounds.plotting import chapter5 as plots

    use_style()
    s = job.settings
    bounds = pd.read_csv(job.input.bounds)
    result = cnn_summary.figure_5_13_data(bounds, alpha=s["alpha"], delta=s["delta"], kappa_L=s["kappa_L"],
                                  max_L=s["max_L"], layers=s.get("layers"))
    write_frame(result["table"], job.output.table)
    fig = plots.layer_gain_figure(result["analytic"], result["summary"], fitted=result["fitted"],
                                  network=cnn_summary.display_name(s["model"]),
                                  parameters=f"(alpha = {s['alpha']:g}, delta = {s['delta']:g}, kappa_L = {s['kappa_L']:g})")
    save_figure(fig, [p for p in job.output if not p.endswith(".csv")])


run_job(snakemake, main)  # noqa: F821

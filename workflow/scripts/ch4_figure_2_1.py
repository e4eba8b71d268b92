"""Figure 2.1: activation functions (rule ch4_figure_2_1)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import activations
    from advbounds.plotting import chapters34

    s = job.settings
    curves = activations.activation_curves(s["names"], s["plot"]["low"], s["plot"]["high"], s["plot"]["points"])
    use_style()
    save_figure(chapters34.figure_2_1(curves), job.output)


run_job(snakemake, main)  # noqa: F821

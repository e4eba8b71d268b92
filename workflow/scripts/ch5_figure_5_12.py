"""Figure 5.12: relative robustness increase from scaled kernels (rule ch5_figure_5_12)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.data import load_prepared
    from advbounds.experiments import cnn, cnn_summary
    from advbounds.io import write_frame
    from advbounds.plotting import chapter5 as plots
    from advbounds.training import load_model

    use_style()
    s = job.settings
    data = load_prepared(job.input.data)
    model = load_model(job.input.model, job.device)
    x = cnn.subsample(data["x_test"], s["samples"], seed=job.seed)
    measured = cnn.measured_kernel_scaling(model, x, epsilon=s["epsilon"], device=job.device,
                                           batch_size=s["bounds"]["batch_size"],
                                           relu_second_derivative=s["bounds"]["relu_second_derivative"])
    table, analytic = cnn_summary.figure_5_12_table(measured, epsilon=s["epsilon"], max_n=s["max_n"])
    write_frame(table, job.output.table)
    fig = plots.kernel_scaling_figure(analytic, measured, epsilon=s["epsilon"], network=cnn_summary.display_name(s["model"]))
    save_figure(fig, [p for p in job.output if not p.endswith(".csv")])


run_job(snakemake, main)  # noqa: F821

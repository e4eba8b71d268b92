"""Figures 5.1 (MNIST) and 5.3 (CIFAR-10): dataset samples (rule ch5_figure_dataset)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.data import load_prepared, n_classes_of
    from advbounds.plotting import chapter5 as plots

    use_style()
    data = load_prepared(job.input.data)
    classes = list(data.get("classes") or range(n_classes_of(data)))
    fig = plots.dataset_samples(data["x_test"], data["y_test"], classes, per_class=job.settings["per_class"],
                                seed=job.seed)
    save_figure(fig, job.output)


run_job(snakemake, main)  # noqa: F821

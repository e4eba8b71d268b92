"""Figure 2.5: iterative FGS perturbation of one test image (rules ch5_figure_2_5, ch5_figure_2_5_model)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.data import load_prepared, n_classes_of
    from advbounds.experiments import cnn, cnn_summary
    from advbounds.plotting import chapter5 as plots
    from advbounds.settings import SearchSettings
    from advbounds.training import load_model

    use_style()
    s = job.settings
    data = load_prepared(job.input.data)
    classes = list(data.get("classes") or range(n_classes_of(data)))
    model = load_model(job.input.model, job.device)
    index = cnn.pick_sample(model, data["x_test"], data["y_test"], seed=job.seed, device=job.device,
                            sample=s.get("sample"))
    seq = cnn.iterative_sequence(model, data["x_test"][index], SearchSettings.from_config(s["attack"]),
                                 steps=s["steps"], device=job.device)
    fig = plots.iterative_figure(seq["images"], seq["perturbations"], seq["labels"], seq["eps"], classes,
                                 title=f"{cnn_summary.display_name(job.params['model'])}, test sample {index}")
    save_figure(fig, job.output)


run_job(snakemake, main)  # noqa: F821

"""Figures 5.8 (LeNet-5) and 5.9 (CIFAR-NIN): adversarial examples (rule ch5_figure_examples)."""

import logging

from advbounds.jobs import run_job

log = logging.getLogger("advbounds")


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure, use_style
    from advbounds.data import load_prepared, n_classes_of
    from advbounds.experiments import cnn, cnn_summary
    from advbounds.plotting import chapter5 as plots
    from advbounds.settings import SearchSettings
    from advbounds.training import load_model

    use_style()
    s = job.settings
    attacks = pd.read_csv(job.input.attacks)
    data = load_prepared(job.input.data)
    classes = list(data.get("classes") or range(n_classes_of(data)))
    attack = SearchSettings.from_config(s["attack"])
    chosen = cnn_summary.select_examples(attacks, s["n"], seed=job.seed)
    model = load_model(job.input.model, job.device)
    if chosen:
        x = data["x_test"][chosen]
        adv = cnn.adversarial_images(model, x, attack, device=job.device, y=data["y_test"][chosen])
        cnn_summary.check_reproduced(attacks.set_index("sample").loc[chosen], adv, log, atol=attack.tol)
        fig = plots.adversarial_grid(x, adv["adversarial"], adv["perturbation"], adv["orig_label"],
                                     adv["adv_label"], adv["eps"], classes)
    else:
        log.warning("no flipped samples: the figure says so")
        fig = plots.adversarial_grid([], [], [], [], [], [], classes)
    save_figure(fig, job.output)


run_job(snakemake, main)  # noqa: F821

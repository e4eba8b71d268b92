"""The robustness sandwich of one Table 3.1 / 4.2 test or trained MLP: per-sample table and figure
(rule sandwich_chapters34)."""

from advbounds.jobs import run_job


def main(job):
    import pandas as pd

    from advbounds.artifacts import save_figure
    from advbounds.experiments import sandwich, sandwich34
    from advbounds.io import write_frame
    from advbounds.plotting.sandwich import sandwich_figure

    settings = sandwich34.Chapters34Sandwich.from_settings(job.settings)
    per_sample = pd.read_csv(job.input.per_sample)
    if settings.kind == "trained_mlp":
        from advbounds.training import load_model

        frame = sandwich34.trained_mlp_sandwich_frame(per_sample, load_model(job.input.model),
                                                      settings.split_inputs(job.input.data), settings)
    else:
        frame = sandwich34.random_test_sandwich_frame(per_sample, settings, base_seed=job.seed)
    write_frame(frame, job.output.table)
    name = job.wildcards["name"]
    save_figure(sandwich_figure(frame, sandwich34.figure_title(name), sandwich34.figure_labels(settings.kind)),
                job.output.figure)
    print(sandwich.describe(name, frame))


run_job(snakemake, main)  # noqa: F821

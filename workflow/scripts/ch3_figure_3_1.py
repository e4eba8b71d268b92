"""Figure 3.1: minimal perturbation of a binary linear classifier (rule ch3_figure_3_1)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import save_figure, use_style
    from advbounds.experiments import linear
    from advbounds.io import write_json
    from advbounds.plotting import chapters34
    from advbounds.settings import SearchSettings

    s = job.settings
    example = linear.figure_3_1_example(sample_interval=s["sample_interval"], param_interval=s["param_interval"],
                                        attack=SearchSettings.from_config(s["attack"]),
                                        seed=linear.test_seed(job.seed, 0))
    write_json(example, job.output.example)
    use_style()
    save_figure(chapters34.figure_3_1(example), job.output.figure)


run_job(snakemake, main)  # noqa: F821

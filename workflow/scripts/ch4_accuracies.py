"""Section 4.3.2: accuracies of the trained MLPs (rule ch4_accuracies)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import write_table
    from advbounds.experiments import mlp_summary
    from advbounds.metrics import ModelMetrics

    s = job.settings
    metrics = {dataset: ModelMetrics.from_json(path) for dataset, path in zip(s["datasets"], job.input.metrics)}
    write_table(mlp_summary.accuracy_table(metrics, s["hidden"]), job.output, caption=job.params["caption"])


run_job(snakemake, main)  # noqa: F821

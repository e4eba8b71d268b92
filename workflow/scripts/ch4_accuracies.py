"""Section 4.3.2: accuracies of the trained MLPs (rule ch4_accuracies)."""

import json

from advbounds.jobs import run_job


def main(job):
    from advbounds.artifacts import write_table
    from advbounds.experiments import mlp

    s = job.settings
    metrics = {}
    for dataset, path in zip(s["datasets"], job.input.metrics):
        with open(path, encoding="utf-8") as handle:
            metrics[dataset] = json.load(handle)
    write_table(mlp.accuracy_table(metrics, s["hidden"]), job.output, caption=mlp.ACCURACY_CAPTION)


run_job(snakemake, main)  # noqa: F821

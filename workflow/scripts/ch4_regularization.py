"""One point of the Section 4.4 regularization sweep (rule ch4_regularization)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import mlp
    from advbounds.io import write_json

    s = job.settings
    dataset = job.wildcards["dataset"]
    point = mlp.regularization_point(
        mlp.load_data(job.input.data), dataset=dataset, ell=s["ell"], hidden=s["hidden"],
        activation=s["activation"], training=s["training"], seed=mlp.model_seed(job.seed, dataset),
        attack=s["attack"], split=s["split"], relu_second_derivative=s["relu_second_derivative"],
        dtype=s["dtype"], device=job.device, progress=True,
    )
    write_json(point, job.output[0])


run_job(snakemake, main)  # noqa: F821

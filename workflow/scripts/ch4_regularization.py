"""One point of the Section 4.4 regularization sweep (rule ch4_regularization)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import mlp
    from advbounds.data import load_prepared
    from advbounds.io import write_json
    from advbounds.settings import SearchSettings, TrainingSettings

    s = job.settings
    dataset = job.wildcards["dataset"]
    training = TrainingSettings.from_config(s["training"]).replace(seed=mlp.model_seed(job.seed, dataset))
    point = mlp.regularization_point(
        load_prepared(job.input.data), dataset=dataset, ell=s["ell"], hidden=s["hidden"],
        activation=s["activation"], training=training, attack=SearchSettings.from_config(s["attack"]), split=s["split"], relu_second_derivative=s["relu_second_derivative"],
        dtype=s["dtype"], device=job.device, progress=True,
    )
    write_json(point, job.output[0])


run_job(snakemake, main)  # noqa: F821

"""Train one Section 4.3.2 MLP (rule ch4_train)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import mlp
    from advbounds.data import load_prepared
    from advbounds.settings import TrainingSettings
    from advbounds.training import save_model

    s = job.settings
    dataset = job.wildcards["dataset"]
    data = load_prepared(job.input.data)
    training = TrainingSettings.from_config(s["training"]).replace(seed=mlp.model_seed(job.seed, dataset))
    model, kwargs, metrics = mlp.train_mlp(data, hidden=s["hidden"], activation=s["activation"],
                                           training=training, device=job.device, progress=True)
    metrics = metrics.with_details(dataset=dataset)
    save_model(model, "mlp", kwargs, job.output.model, metrics=metrics)
    metrics.to_json(job.output.metrics)


run_job(snakemake, main)  # noqa: F821

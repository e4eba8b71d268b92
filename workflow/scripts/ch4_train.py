"""Train one Section 4.3.2 MLP (rule ch4_train)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import mlp
    from advbounds.io import write_json
    from advbounds.training import save_model

    s = job.settings
    dataset = job.wildcards["dataset"]
    data = mlp.load_data(job.input.data)
    model, metrics, kwargs = mlp.train_mlp(data, hidden=s["hidden"], activation=s["activation"],
                                           training=s["training"], seed=mlp.model_seed(job.seed, dataset),
                                           device=job.device, progress=True)
    metrics["dataset"] = dataset
    save_model(model, "mlp", kwargs, job.output.model, metrics=metrics)
    write_json(metrics, job.output.metrics)


run_job(snakemake, main)  # noqa: F821

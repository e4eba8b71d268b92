"""Train one Chapter 5 network (rule ch5_train): results/models/{model}.pt and .metrics.json."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.data import load_prepared
    from advbounds.experiments import cnn, cnn_summary
    from advbounds.settings import TrainingSettings
    from advbounds.training import save_model

    model_name = job.wildcards["model"]
    settings = job.settings
    builder = settings.get("builder", model_name)
    data = load_prepared(job.input.data)
    training = TrainingSettings.from_config(settings["training"]).replace(seed=job.seed)
    model, kwargs, metrics = cnn.train_cnn(builder, data, settings.get("architecture"), training, device=job.device,
                                           checkpoint_path=job.params["checkpoint"],
                                           code_version=job.params["code"], progress=True)
    metrics = metrics.with_details(model=model_name, network=cnn_summary.display_name(model_name),
                                   dataset=settings["dataset"], input_shape=list(cnn.image_shape(data)),
                                   classes=list(data.get("classes") or []), n_test=int(len(data["x_test"])),
                                   data_meta=data.get("meta", {}))
    save_model(model, builder, kwargs, job.output.model, metrics)
    metrics.to_json(job.output.metrics)


run_job(snakemake, main)  # noqa: F821

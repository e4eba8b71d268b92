# Data stage: raw files under data_dir (downloaded and verified, pre-staged, or synthetic in smoke
# runs) -> results/data/{dataset}.pt. Iris and Wine come with scikit-learn and need no raw file.
# A fetch job's outputs are only the files it downloads; files already there, pre-staged ones
# included, are plain inputs of prepare_data, verified there. In smoke runs the fetch job writes
# every synthetic file itself (from the seed and sizes), so there all of them are its outputs.

DATA_SETTINGS = {
    "data_dir": DATA_DIR,
    "synthetic": config["synthetic"],
    "allow_partial": config["datasets"]["allow_partial_mnist_train"],
    # only smoke runs read the sizes; keeping them out otherwise keeps real jobs from rerunning
    "synthetic_sizes": config["datasets"]["synthetic_sizes"] if config["synthetic"] else None,
}


for _dataset in ("spambase", "mnist", "cifar10"):

    rule:
        name:
            f"fetch_{_dataset}"
        output:
            dataset_raw_files(_dataset, missing_only=not config["synthetic"]),
        params:
            **job_params("fetch_data.py", seed=config["synthetic"], dataset=_dataset, settings=DATA_SETTINGS),
        log:
            f"logs/data/fetch_{_dataset}.log",
        script:
            "../scripts/fetch_data.py"


rule prepare_data:
    """Verify checksums, standardize/split (UCI) or keep pixel units (images), save tensors."""
    input:
        lambda wc: dataset_raw_files(wc.dataset),
    output:
        "results/data/{dataset}.pt",
    params:
        **job_params("prepare_data.py", seed=True,
            settings={**DATA_SETTINGS, "uci_split": config["datasets"]["uci_split"],
                      "image_val_fraction": config["datasets"]["image_val_fraction"]},
        ),
    wildcard_constraints:
        dataset="|".join(DATASETS),
    log:
        "logs/data/prepare_{dataset}.log",
    script:
        "../scripts/prepare_data.py"


# Data stage: raw files under data_dir (downloaded and verified, pre-staged, or synthetic in smoke
# runs) -> results/data/{dataset}.pt. Iris and Wine come with scikit-learn and need no raw file.

DATA_SETTINGS = {
    "data_dir": DATA_DIR,
    "offline": config["offline"],
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
            dataset_raw_files(_dataset),
        params:
            **job_settings(dataset=_dataset, settings=DATA_SETTINGS),
        log:
            f"logs/data/fetch_{_dataset}.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/fetch_data.py"


rule prepare_data:
    """Verify checksums, standardize/split (UCI) or keep pixel units (images), save tensors."""
    input:
        lambda wc: dataset_raw_files(wc.dataset),
    output:
        "results/data/{dataset}.pt",
    params:
        **job_settings(
            settings={**DATA_SETTINGS, "uci_split": config["datasets"]["uci_split"],
                      "image_val_fraction": config["datasets"]["image_val_fraction"]},
        ),
    wildcard_constraints:
        dataset="|".join(DATASETS),
    log:
        "logs/data/prepare_{dataset}.log",
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"


ALL_TARGETS.extend(expand("results/data/{dataset}.pt", dataset=DATASETS))

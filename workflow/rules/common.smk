# Shared set-up: config validation, paths and small helpers for the rule files.
# Validation runs when the workflow is parsed, so a bad config stops the run before any job.

import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

_split = config["datasets"]["uci_split"]
if abs(_split["train"] + _split["test"] + _split["val"] - 1.0) > 1e-9:
    raise ValueError(
        "config key datasets.uci_split: train + test + val must sum to 1 "
        f"(got {_split['train']} + {_split['test']} + {_split['val']})"
    )

DATA_DIR = config["data_dir"]
# One software environment for all rules (used with --use-conda): environment.yml installs this
# package, and pyproject.toml is the one list of dependencies. Relative to workflow/rules/.
CONDA_ENV = "../../environment.yml"
DATASETS = ["iris", "wine", "spambase", "mnist", "cifar10"]

# Every rule file appends the final artifacts it owns; `rule all` requests them.
ALL_TARGETS = []


def job_settings(**extra):
    """Params every job receives: the seed and device, plus the config slice it depends on.

    Passing only the slice a job uses keeps Snakemake's params rerun trigger precise: editing one
    config value reruns only the jobs that value feeds.
    """
    return {"seed": config["seed"], "device": config["device"], **extra}


def dataset_raw_files(dataset):
    """Raw files of a dataset under data_dir: what its fetch rule produces (none for Iris/Wine)."""
    from advbounds.data import raw_files

    return [f"{DATA_DIR}/{path}" for path in raw_files(dataset)]

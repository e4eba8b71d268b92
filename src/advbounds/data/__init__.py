"""Datasets of the thesis: download, checksum verification, preparation, synthetic stand-ins.

On-disk layout under ``data_dir`` (config ``data_dir``, default ``resources/``)::

    mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   # torchvision's layout (or the
                                                                        # extracted *-ubyte in place of a .gz)
    cifar10/cifar-10-python.tar.gz                                      # the official archive
    spambase/spambase.data                                              # UCI, CRLF or LF
    <dataset>/SYNTHETIC_CHECKSUMS.json                                  # synthetic (smoke) folders only
    (iris and wine: bundled with scikit-learn, nothing on disk)

Prepared output ``results/data/<name>.pt``: a dict with ``x_train, y_train, x_val, y_val, x_test,
y_test`` (float32 / int64 tensors), ``classes`` (list of str) and ``meta`` (plain dict). Command
line: ``python -m advbounds.data {fetch,prepare,synthetic} NAME --data-dir DIR [--offline] ...``.
"""

import importlib

from advbounds.data.errors import ChecksumError, DataError, DatasetUnavailableError
from advbounds.data.specs import DATASETS, MNIST_TRAIN_FILES, DatasetSpec, RawFile, get_spec, raw_files

# The rest is imported on first use: Snakemake imports this package while parsing the workflow
# (for raw_files), and preparation pulls in torch, which would add seconds to every snakemake call.
_LAZY = {
    "check_partial_mnist": ("fetch", "check_partial_mnist"),
    "fetch_raw": ("fetch", "fetch_raw"),
    "read_idx_header": ("fetch", "read_idx_header"),
    "resolve_raw_file": ("fetch", "resolve_raw_file"),
    "verify_raw_file": ("fetch", "verify_raw_file"),
    "DEFAULT_UCI_SPLIT": ("prepare", "DEFAULT_UCI_SPLIT"),
    "load_prepared": ("prepare", "load_prepared"),
    "n_classes_of": ("prepare", "n_classes_of"),
    "prepare_dataset": ("prepare", "prepare_dataset"),
    "DEFAULT_SYNTHETIC_SIZES": ("synthetic", "DEFAULT_SIZES"),
    "write_synthetic": ("synthetic", "write_synthetic"),
}


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
    globals()[name] = value
    return value


__all__ = [
    "DATASETS", "DEFAULT_SYNTHETIC_SIZES", "DEFAULT_UCI_SPLIT", "MNIST_TRAIN_FILES", "ChecksumError", "DataError",
    "DatasetSpec", "DatasetUnavailableError", "RawFile", "check_partial_mnist", "fetch_raw", "get_spec",
    "load_prepared", "n_classes_of", "prepare_dataset", "raw_files", "read_idx_header", "resolve_raw_file", "verify_raw_file",
    "write_synthetic",
]

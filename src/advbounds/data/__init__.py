"""Datasets of the thesis: download, checksum verification, preparation, synthetic stand-ins.

On-disk layout under ``data_dir`` (config ``data_dir``, default ``resources/``)::

    mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   # torchvision's layout
    cifar10/cifar-10-python.tar.gz                                      # the official archive
    spambase/spambase.data                                              # UCI, CRLF or LF
    <dataset>/SYNTHETIC_CHECKSUMS.json                                  # synthetic (smoke) folders only
    (iris and wine: bundled with scikit-learn, nothing on disk)

Prepared output ``results/data/<name>.pt``: a dict with ``x_train, y_train, x_val, y_val, x_test,
y_test`` (float32 / int64 tensors), ``classes`` (list of str) and ``meta`` (plain dict). Command
line: ``python -m advbounds.data {fetch,prepare,synthetic} NAME --data-dir DIR [--offline] ...``.
"""

from advbounds.data.errors import ChecksumError, DataError, DatasetUnavailableError
from advbounds.data.fetch import check_partial_mnist, fetch_raw, read_idx_header, verify_raw_file
from advbounds.data.prepare import DEFAULT_UCI_SPLIT, load_prepared, prepare_dataset
from advbounds.data.specs import DATASETS, MNIST_TRAIN_FILES, DatasetSpec, RawFile, get_spec, raw_files
from advbounds.data.synthetic import DEFAULT_SIZES as DEFAULT_SYNTHETIC_SIZES
from advbounds.data.synthetic import write_synthetic

__all__ = [
    "DATASETS", "DEFAULT_SYNTHETIC_SIZES", "DEFAULT_UCI_SPLIT", "MNIST_TRAIN_FILES", "ChecksumError", "DataError",
    "DatasetSpec", "DatasetUnavailableError", "RawFile", "check_partial_mnist", "fetch_raw", "get_spec",
    "load_prepared", "prepare_dataset", "raw_files", "read_idx_header", "verify_raw_file", "write_synthetic",
]

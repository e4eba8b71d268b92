"""Datasets of the thesis: download, checksum verification, preparation, synthetic stand-ins.

On-disk layout under ``data_dir`` (config ``data_dir``, default ``resources/``)::

    mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   # torchvision's layout
    cifar10/cifar-10-python.tar.gz                                      # the official archive
    spambase/spambase.data                                              # UCI, CRLF or LF
    (iris and wine: bundled with scikit-learn, nothing on disk)
"""

from advbounds.data.errors import ChecksumError, DataError, DatasetUnavailableError
from advbounds.data.fetch import fetch_raw, verify_raw_file
from advbounds.data.prepare import load_prepared, prepare_dataset
from advbounds.data.specs import DATASETS, get_spec, raw_files
from advbounds.data.synthetic import write_synthetic

__all__ = [
    "DATASETS", "ChecksumError", "DataError", "DatasetUnavailableError", "fetch_raw", "get_spec",
    "load_prepared", "prepare_dataset", "raw_files", "verify_raw_file", "write_synthetic",
]

"""Where each dataset comes from, which raw files it needs and their published checksums.

MNIST and CIFAR-10 take their URLs and md5 sums from torchvision's dataset classes, so that the
numbers are the ones torchvision publishes and verifies. Spambase comes from the UCI archive.
Iris and Wine are bundled with scikit-learn and need no raw file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torchvision.datasets import CIFAR10, MNIST

SPAMBASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/spambase/spambase.data"
# The official spambase.data uses CRLF line endings. We hash it with CRLF read as LF, so the
# official download and an LF copy of it (same values) both verify; any changed value does not.
SPAMBASE_MD5_LF = "cc4b58cc4011ccc4526e31d9b483ace9"


@dataclass(frozen=True)
class RawFile:
    """One raw file: its path relative to ``<data_dir>/<dataset>/``, its URLs and md5."""

    relpath: str
    urls: tuple[str, ...]
    md5: str
    normalize_newlines: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "uci" (tabular, standardized) or "image" (raw pixels [0, 255])
    source: str  # human-readable origin, recorded in the prepared file's meta
    raw_files: tuple[RawFile, ...] = field(default_factory=tuple)
    classes: tuple[str, ...] = ()


def _mnist_files() -> tuple[RawFile, ...]:
    return tuple(
        RawFile(f"MNIST/raw/{name}", tuple(f"{mirror}{name}" for mirror in MNIST.mirrors), md5)
        for name, md5 in MNIST.resources
    )


DATASETS: dict[str, DatasetSpec] = {
    "iris": DatasetSpec("iris", "uci", "scikit-learn bundled copy of UCI Iris (sklearn.datasets.load_iris)"),
    "wine": DatasetSpec("wine", "uci", "scikit-learn bundled copy of UCI Wine (sklearn.datasets.load_wine)"),
    "spambase": DatasetSpec(
        "spambase", "uci", "UCI Machine Learning Repository, Spambase",
        (RawFile("spambase.data", (SPAMBASE_URL,), SPAMBASE_MD5_LF, normalize_newlines=True),),
        classes=("not spam", "spam"),
    ),
    "mnist": DatasetSpec("mnist", "image", "MNIST via torchvision.datasets.MNIST", _mnist_files(),
                         classes=tuple(str(d) for d in range(10))),
    "cifar10": DatasetSpec(
        "cifar10", "image", "CIFAR-10 (python version) via torchvision.datasets.CIFAR10",
        (RawFile(CIFAR10.filename, (CIFAR10.url,), CIFAR10.tgz_md5),),
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}

# The MNIST training files: the only ones a shortened (partial) copy may replace, on request.
MNIST_TRAIN_FILES = ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz")


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def raw_files(name: str) -> list[str]:
    """Raw file paths of a dataset relative to ``data_dir`` (what the fetch rule produces)."""
    spec = get_spec(name)
    return [f"{name}/{raw.relpath}" for raw in spec.raw_files]

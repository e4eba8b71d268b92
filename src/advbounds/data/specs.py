"""Where each dataset comes from, which raw files it needs and their published checksums.

On-disk layout under ``data_dir`` (config ``data_dir``; ``resources/`` for the thesis run)::

    mnist/MNIST/raw/train-images-idx3-ubyte.gz    # torchvision's raw layout, the four official
    mnist/MNIST/raw/train-labels-idx1-ubyte.gz    # gzipped IDX files exactly as downloaded; each
    mnist/MNIST/raw/t10k-images-idx3-ubyte.gz     # may instead be pre-staged extracted, without
    mnist/MNIST/raw/t10k-labels-idx1-ubyte.gz     # ".gz" (torchvision's extracted file), see below
    cifar10/cifar-10-python.tar.gz                # the official archive (torchvision's file name)
    spambase/spambase.data                        # UCI, CRLF (official) or LF line endings
    <dataset>/SYNTHETIC_CHECKSUMS.json            # only in synthetic (smoke) data folders

Iris and Wine are bundled with scikit-learn and need no file. MNIST and CIFAR-10 use the URLs
and md5 sums that torchvision's dataset classes publish and verify themselves (``MNIST.mirrors``,
``MNIST.resources``, ``CIFAR10.url``, ``CIFAR10.tgz_md5`` and the per-batch lists), copied below so
that reading this table does not import torchvision: Snakemake reads it while parsing the
workflow, and the import took 3-4 s of every ``snakemake`` call. ``tests/test_data.py`` checks
that the copy equals the pinned torchvision's values. Spambase comes from the UCI archive (see
``SPAMBASE_MD5_NORMALIZED``).

MNIST files are verified by either of two checksums: the md5 of the ``.gz`` as torchvision
publishes it, or the md5 of the decompressed IDX content (``MNIST_CONTENT_MD5``), which every
faithful copy shares however it was (re-)compressed. The content md5 also accepts the extracted
file (``RawFile.extracted_relpath``: torchvision's ``MNIST/raw/*-ubyte``), which stands in for
the ``.gz`` only when the ``.gz`` is absent (see :func:`raw_files` and ``fetch.resolve_raw_file``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# torchvision.datasets.MNIST.mirrors and .resources (torchvision 0.29)
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_RESOURCES = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
# md5 of the decompressed content of each official MNIST file, i.e. of the IDX file torchvision
# extracts from it: the same for every faithful copy, however it was (re-)compressed. torchvision
# does not publish these; tests/test_data.py checks them against the real files where available.
MNIST_CONTENT_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",  # 47,040,016 bytes
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
# torchvision.datasets.CIFAR10.url, .filename, .tgz_md5, .base_folder, and the (file, md5) pairs of
# .train_list, .test_list and .meta
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_FILENAME = "cifar-10-python.tar.gz"
CIFAR10_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_BASE_FOLDER = "cifar-10-batches-py"
CIFAR10_MEMBERS = (
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("test_batch", "40351d587109b95175f43aff81a1287e"),
    ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
)

SPAMBASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/spambase/spambase.data"

# Spambase checksum. UCI publishes no checksum for spambase.data, so none can be copied from the
# source. What we know:
#   * the official file has CRLF line endings and is 702,942 bytes (a public listing of the unzipped
#     UCI download shows that size);
#   * the LF copy that stands in for it on our offline machines is 698,341 bytes, 4,601 lines, each
#     ending in "\n", with the same values; 698,341 + 4,601 (one CR per line) = 702,942.
# So the official file is, byte for byte, that copy with every "\n" turned into "\r\n"; its digests
# would be sha256 d6970eaac08fc85cedc3f0d738f08539d6d0160b26cb5a490aa161d4b76dd629 and md5
# 7459fd63f2b4961fbeedf7f83ef41c3b. These are DERIVED, not published, and unconfirmed against a
# fresh download. We therefore verify the file's content with its line endings normalized (every
# CRLF read as LF), which the official file and an LF copy of it share:
SPAMBASE_MD5_NORMALIZED = "cc4b58cc4011ccc4526e31d9b483ace9"  # md5 of the LF content (= LF copy's md5)
# and, independently of any digest, its structure (Section 4.3.2; UCI spambase.names):
SPAMBASE_ROWS, SPAMBASE_COLUMNS, SPAMBASE_SPAM = 4601, 58, 1813  # 57 features + the 0/1 spam label
# Backwards-compatible alias
SPAMBASE_MD5_LF = SPAMBASE_MD5_NORMALIZED


@dataclass(frozen=True)
class RawFile:
    """One raw file: its path relative to ``<data_dir>/<dataset>/``, its mirrors and md5.

    ``normalize_newlines``: the md5 is of the content with CRLF read as LF (Spambase).
    ``members``: for an archive, ``(member path, md5)`` of the files inside it that are used.
    ``content_md5``: for a gzipped file, the md5 of its decompressed content. A copy whose own md5
    differs (re-compressed) is accepted when its content matches, and so is the extracted file
    (``extracted_relpath``, the name without ``.gz``) when the ``.gz`` itself is absent.
    """

    relpath: str
    urls: tuple[str, ...]
    md5: str
    normalize_newlines: bool = False
    members: tuple[tuple[str, str], ...] = ()
    content_md5: str = ""

    @property
    def extracted_relpath(self) -> str | None:
        """Where the extracted (decompressed) form may stand in for the file; ``None`` if it may not."""
        if self.content_md5 and self.relpath.endswith(".gz"):
            return self.relpath.removesuffix(".gz")
        return None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "uci" (tabular, standardized) or "image" (raw pixels [0, 255])
    source: str  # human-readable origin, recorded in the prepared file's meta
    raw_files: tuple[RawFile, ...] = field(default_factory=tuple)
    classes: tuple[str, ...] = ()
    # structure every copy of the official data has: rows / shapes / class counts
    expected: dict = field(default_factory=dict, compare=False)


def _mnist_files() -> tuple[RawFile, ...]:
    return tuple(
        RawFile(f"MNIST/raw/{name}", tuple(f"{mirror}{name}" for mirror in MNIST_MIRRORS), md5,
                content_md5=MNIST_CONTENT_MD5[name])
        for name, md5 in MNIST_RESOURCES
    )


def _cifar_members() -> tuple[tuple[str, str], ...]:
    return tuple((f"{CIFAR10_BASE_FOLDER}/{fname}", md5) for fname, md5 in CIFAR10_MEMBERS)


DATASETS: dict[str, DatasetSpec] = {
    "iris": DatasetSpec(
        "iris", "uci", "scikit-learn bundled copy of UCI Iris (sklearn.datasets.load_iris)",
        expected={"shape": (150, 4), "class_counts": (50, 50, 50)},  # 4.3.2
    ),
    "wine": DatasetSpec(
        "wine", "uci", "scikit-learn bundled copy of UCI Wine (sklearn.datasets.load_wine)",
        expected={"shape": (178, 13), "class_counts": (59, 71, 48)},  # 4.3.2
    ),
    "spambase": DatasetSpec(
        "spambase", "uci", f"UCI Machine Learning Repository, Spambase ({SPAMBASE_URL})",
        (RawFile("spambase.data", (SPAMBASE_URL,), SPAMBASE_MD5_NORMALIZED, normalize_newlines=True),),
        classes=("not spam", "spam"),
        expected={"shape": (SPAMBASE_ROWS, SPAMBASE_COLUMNS - 1), "class_counts": (SPAMBASE_ROWS - SPAMBASE_SPAM,
                                                                                  SPAMBASE_SPAM)},
    ),
    "mnist": DatasetSpec(
        "mnist", "image", "MNIST via torchvision.datasets.MNIST (official 60,000/10,000 split)", _mnist_files(),
        classes=tuple(str(d) for d in range(10)), expected={"train": 60000, "test": 10000},
    ),
    "cifar10": DatasetSpec(
        "cifar10", "image", f"CIFAR-10 python version via torchvision.datasets.CIFAR10 ({CIFAR10_URL})",
        (RawFile(CIFAR10_FILENAME, (CIFAR10_URL,), CIFAR10_TGZ_MD5, members=_cifar_members()),),
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        expected={"train": 50000, "test": 10000},
    ),
}

# The MNIST training files: the only ones a shortened (partial) copy may replace, on request.
MNIST_TRAIN_FILES = ("MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz")


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def raw_files(name: str, data_dir: str | os.PathLike | None = None, *, missing_only: bool = False) -> list[str]:
    """Raw file paths of a dataset relative to ``data_dir``.

    Without ``data_dir``: the canonical paths (the files a download writes). With ``data_dir``:
    each file as it is or will be on disk -- the canonical path, except where only the extracted
    form of an MNIST file was pre-staged (``.gz`` absent, ``*-ubyte`` present), which then is the
    file used. ``missing_only`` (needs ``data_dir``): only the files that are absent, i.e. what a
    fetch has to download. Reads nothing but directory entries (Snakemake calls it while parsing).
    """
    spec = get_spec(name)
    if data_dir is None:
        if missing_only:
            raise ValueError("raw_files(missing_only=True) needs data_dir")
        return [f"{name}/{raw.relpath}" for raw in spec.raw_files]
    dataset_dir = Path(data_dir) / name
    paths = []
    for raw in spec.raw_files:
        relpath = raw.relpath
        if not (dataset_dir / relpath).is_file() and raw.extracted_relpath \
                and (dataset_dir / raw.extracted_relpath).is_file():
            relpath = raw.extracted_relpath
        if not (missing_only and (dataset_dir / relpath).is_file()):
            paths.append(f"{name}/{relpath}")
    return paths

"""Tiny synthetic stand-ins written in the real file formats, for the smoke run and for CI.

MNIST becomes gzipped IDX files in torchvision's raw layout, CIFAR-10 the python-pickle batches
inside ``cifar-10-python.tar.gz``, Spambase a comma-separated ``spambase.data``. The loaders and
verifiers of the real run then read them unchanged. Each class has its own template plus noise, so
that a few training iterations reach above-chance accuracy. A manifest of md5 sums vouches for the
stand-ins; the official checksums are never relaxed for them.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from advbounds.data.checksums import write_manifest
from advbounds.data.specs import get_spec
from advbounds.io import atomic_write

DEFAULT_SIZES = {"mnist_train": 600, "mnist_test": 200, "cifar10_train": 500, "cifar10_test": 200,
                 "spambase_rows": 300}


def write_synthetic(name: str, data_dir: str | os.PathLike, seed: int, sizes: dict[str, int] | None = None) -> list[Path]:
    """Write the stand-in raw files of ``name`` under ``data_dir``; return their paths."""
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    rng = np.random.default_rng(seed)
    dataset_dir = Path(data_dir) / name
    writers = {"mnist": _write_mnist, "cifar10": _write_cifar10, "spambase": _write_spambase}
    if name not in writers:
        get_spec(name)  # raises for unknown names
        return []  # Iris and Wine are bundled with scikit-learn: nothing to write
    files = writers[name](dataset_dir, rng, sizes)
    write_manifest(dataset_dir, files)
    return files


def _class_images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    templates = rng.uniform(0, 255, size=(10, *shape))
    noise = rng.normal(0, 40, size=(n, *shape))
    images = np.clip(0.6 * templates[labels] + noise + 40, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(">u1").tobytes()


def _write_gzip(path: Path, payload: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        # mtime=0 keeps the bytes (and so the md5) identical across runs
        with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as gz:
            gz.write(payload)


def _write_mnist(dataset_dir: Path, rng: np.random.Generator, sizes: dict[str, int]) -> list[Path]:
    raw = dataset_dir / "MNIST" / "raw"
    files = []
    for prefix, n in (("train", sizes["mnist_train"]), ("t10k", sizes["mnist_test"])):
        images, labels = _class_images(rng, n, (28, 28))
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            path = raw / f"{prefix}-{kind}-ubyte.gz"
            _write_gzip(path, _idx_bytes(array, magic))
            files.append(path)
    return files


def _write_cifar10(dataset_dir: Path, rng: np.random.Generator, sizes: dict[str, int]) -> list[Path]:
    spec = get_spec("cifar10")
    members: dict[str, bytes] = {}
    train, train_labels = _class_images(rng, sizes["cifar10_train"], (3, 32, 32))
    for i, chunk in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        members[f"data_batch_{i}"] = _pickle_batch(train[chunk], train_labels[chunk], f"training batch {i} of 5")
    test, test_labels = _class_images(rng, sizes["cifar10_test"], (3, 32, 32))
    members["test_batch"] = _pickle_batch(test, test_labels, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({"label_names": list(spec.classes), "num_vis": 3072,
                                            "num_cases_per_batch": len(train_labels) // 5})
    archive = dataset_dir / "cifar-10-python.tar.gz"
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for fname, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{fname}")
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
    with atomic_write(archive, "wb") as handle:
        handle.write(buffer.getvalue())
    # the manifest lists the archive and, as torchvision checks them after unpacking, each batch
    batch_dir = dataset_dir / "cifar-10-batches-py"
    for fname, payload in members.items():
        with atomic_write(batch_dir / fname, "wb") as handle:
            handle.write(payload)
    return [archive, *(batch_dir / fname for fname in members)]


def _pickle_batch(images: np.ndarray, labels: np.ndarray, batch_label: str) -> bytes:
    # the official layout: rows of 3072 bytes, the red plane first, then green, then blue
    return pickle.dumps({"batch_label": batch_label, "labels": labels.astype(int).tolist(),
                         "data": images.reshape(len(labels), -1),
                         "filenames": [f"synthetic_{i:05d}.png" for i in range(len(labels))]})


def _write_spambase(dataset_dir: Path, rng: np.random.Generator, sizes: dict[str, int]) -> list[Path]:
    n = sizes["spambase_rows"]
    labels = (rng.uniform(size=n) < 0.394).astype(int)  # 1813 / 4601 are spam in the real set
    shift = rng.uniform(0, 1.5, size=57)
    features = np.abs(rng.normal(0, 1, size=(n, 57)) + labels[:, None] * shift)
    lines = [",".join(f"{v:.3f}" for v in row) + f",{label}" for row, label in zip(features, labels)]
    path = dataset_dir / "spambase.data"
    with atomic_write(path, "w", newline="\n") as handle:
        handle.write("\n".join(lines) + "\n")
    return [path]

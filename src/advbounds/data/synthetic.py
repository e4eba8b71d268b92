"""Tiny synthetic stand-ins written in the real file formats, for the smoke run and for CI.

* MNIST: the four gzipped IDX files in torchvision's raw layout (``mnist/MNIST/raw/*.gz``).
* CIFAR-10: ``cifar10/cifar-10-python.tar.gz`` holding ``cifar-10-batches-py/`` with
  ``data_batch_1..5``, ``test_batch`` and ``batches.meta``, pickled dicts laid out like the official
  ones (``data``: uint8 ``[N, 3072]``, red plane then green then blue; ``labels``; ``label_names``).
* Spambase: ``spambase/spambase.data``, 57 comma-separated features and the 0/1 label, CRLF line
  endings like the official file.

The loaders and verifiers of the real run read them unchanged. Every class has its own template
plus noise, so a few training iterations reach well above chance. A manifest
(``SYNTHETIC_CHECKSUMS.json``) lists their md5 sums and structure; the verifier uses it only in
runs configured ``synthetic: true`` -- the official checksums are never relaxed.

The output is a pure function of ``(name, seed, sizes)`` (gzip and tar timestamps are fixed at 0),
and a file that already holds exactly the right bytes is not rewritten (its mtime is kept). The
writer refuses to overwrite any existing file its manifest does not list, so pointing it at a
folder of real downloads fails instead of destroying them.
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

from advbounds.data.checksums import md5_of_bytes, read_manifest, write_manifest
from advbounds.data.errors import DataError
from advbounds.data.specs import get_spec
from advbounds.io import atomic_write

DEFAULT_SIZES = {"mnist_train": 600, "mnist_test": 200, "cifar10_train": 500, "cifar10_test": 200,
                 "spambase_rows": 300}
_SIZE_KEYS = {"mnist": ("mnist_train", "mnist_test"), "cifar10": ("cifar10_train", "cifar10_test"),
              "spambase": ("spambase_rows",)}


def write_synthetic(name: str, data_dir: str | os.PathLike, seed: int,
                    sizes: dict[str, int] | None = None) -> list[Path]:
    """Write the stand-in raw files of ``name`` under ``data_dir``; return the raw files' paths.

    ``sizes`` uses the keys of config ``datasets.synthetic_sizes`` (missing keys take
    ``DEFAULT_SIZES``). Iris and Wine are bundled with scikit-learn: nothing is written for them.
    """
    spec = get_spec(name)  # raises for unknown names
    if name not in _SIZE_KEYS:
        return []
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    sizes = {key: int(sizes[key]) for key in _SIZE_KEYS[name]}
    if min(sizes.values()) < (20 if name == "spambase" else 10):
        raise ValueError(f"synthetic {name} needs at least {20 if name == 'spambase' else 10} samples, got {sizes}")
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    files, members, structure = _GENERATORS[name](rng, sizes)
    dataset_dir = Path(data_dir) / name

    listed = read_manifest(dataset_dir)
    foreign = [rel for rel in files if (dataset_dir / rel).exists() and rel not in listed]
    if foreign:
        raise DataError(f"refusing to write synthetic {name} data into {dataset_dir}: "
                        f"{', '.join(foreign)} already exist(s) and are not synthetic files written by "
                        f"this writer (no {dataset_dir / 'SYNTHETIC_CHECKSUMS.json'} lists them). Point data_dir "
                        f"of a synthetic run at a folder of its own (config/smoke.yaml uses resources/smoke).")
    normalized = {raw.relpath for raw in spec.raw_files if raw.normalize_newlines}
    digests = {rel: md5_of_bytes(payload, normalize_newlines=rel in normalized) for rel, payload in files.items()}
    digests.update(members)
    # The manifest goes first: if we are interrupted below, the next call finds the half-written
    # set listed (so it may be overwritten) and the verifier rejects it until it is complete.
    write_manifest(dataset_dir, digests, dataset=name, seed=seed, sizes=sizes, structure=structure)
    written = []
    for rel, payload in files.items():
        path = dataset_dir / rel
        if not (path.is_file() and path.read_bytes() == payload):
            with atomic_write(path, "wb") as handle:
                handle.write(payload)
        written.append(path)
    return written


# --- generators: (files {relpath: bytes}, archive members {relpath: md5}, structure) -------------

def _mnist(rng: np.random.Generator, sizes: dict[str, int]):
    """Digit-like images: per class a template of a few Gaussian strokes on black, shifted by up to
    2 pixels, scaled and noised per image."""
    yy, xx = np.mgrid[0:28, 0:28]
    centers = rng.uniform(7, 21, size=(10, 4, 2))
    widths = rng.uniform(1.5, 3.0, size=(10, 4))
    blobs = np.exp(-((yy - centers[..., 0, None, None]) ** 2 + (xx - centers[..., 1, None, None]) ** 2)
                   / (2 * widths[..., None, None] ** 2))
    templates = blobs.sum(axis=1)
    templates /= templates.max(axis=(1, 2), keepdims=True)
    files = {}
    for prefix, n in (("train", sizes["mnist_train"]), ("t10k", sizes["mnist_test"])):
        labels = _balanced_labels(rng, n, 10)
        shifts = rng.integers(-2, 3, size=(n, 2))
        images = np.stack([np.roll(templates[c], tuple(s), axis=(0, 1)) for c, s in zip(labels, shifts)])
        images = images * rng.uniform(0.8, 1.0, size=(n, 1, 1)) * 255 + rng.normal(0, 20, size=images.shape)
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
        files[f"MNIST/raw/{prefix}-images-idx3-ubyte.gz"] = _gzip(_idx_bytes(images, 2051))
        files[f"MNIST/raw/{prefix}-labels-idx1-ubyte.gz"] = _gzip(_idx_bytes(labels.astype(np.uint8), 2049))
    return files, {}, {"train": sizes["mnist_train"], "test": sizes["mnist_test"]}


def _cifar10(rng: np.random.Generator, sizes: dict[str, int]):
    """Colour images: per class a base colour plus a smooth 4x4-block pattern, with per-image
    brightness jitter and pixel noise."""
    classes = list(get_spec("cifar10").classes)
    base = rng.uniform(90, 165, size=(10, 3, 1, 1))
    pattern = np.kron(rng.normal(0, 12, size=(10, 3, 4, 4)), np.ones((8, 8)))
    templates = base + pattern

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = _balanced_labels(rng, n, 10)
        images = templates[labels] + rng.normal(0, 20, size=(n, 1, 1, 1)) + rng.normal(0, 70, size=(n, 3, 32, 32))
        return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels

    members: dict[str, bytes] = {}
    train, train_labels = draw(sizes["cifar10_train"])
    for i, chunk in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        members[f"data_batch_{i}"] = _pickle_batch(train[chunk], train_labels[chunk], f"training batch {i} of 5")
    test, test_labels = draw(sizes["cifar10_test"])
    members["test_batch"] = _pickle_batch(test, test_labels, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({"num_cases_per_batch": len(train_labels) // 5,
                                            "label_names": classes, "num_vis": 3072}, protocol=2)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(folder)
        for fname, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{fname}")
            info.size, info.mtime, info.mode = len(payload), 0, 0o644
            tar.addfile(info, io.BytesIO(payload))
    member_md5 = {f"cifar-10-batches-py/{fname}": md5_of_bytes(payload) for fname, payload in members.items()}
    structure = {"train": sizes["cifar10_train"], "test": sizes["cifar10_test"]}
    return {"cifar-10-python.tar.gz": buffer.getvalue()}, member_md5, structure


def _spambase(rng: np.random.Generator, sizes: dict[str, int]):
    """Sparse non-negative word/char frequencies (54), capital-run statistics (3), 0/1 label; the
    two classes differ in how often and how strongly each feature occurs."""
    n = sizes["spambase_rows"]
    n_spam = int(round(n * 1813 / 4601))  # the real proportion
    labels = np.zeros(n, dtype=int)
    labels[:n_spam] = 1
    rng.shuffle(labels)
    rate = rng.uniform(0.05, 0.5, size=54) * np.exp(rng.normal(0, 0.35, size=(2, 54)))  # classes overlap
    scale = rng.uniform(0.1, 1.5, size=54) * np.exp(rng.normal(0, 0.35, size=(2, 54)))
    present = rng.uniform(size=(n, 54)) < rate[labels]
    freqs = np.round(present * rng.exponential(scale[labels]), 2)
    run_average = np.round(1 + rng.exponential(np.where(labels == 1, 4.0, 3.0)), 3)
    run_longest = np.ceil(run_average * rng.uniform(1, 4, size=n)).astype(int)
    run_total = run_longest + rng.poisson(np.where(labels == 1, 250, 150))
    rows = [",".join([*(_number(v) for v in f), _number(a), str(lo), str(t), str(y)])
            for f, a, lo, t, y in zip(freqs, run_average, run_longest, run_total, labels)]
    payload = ("\r\n".join(rows) + "\r\n").encode("ascii")
    return {"spambase.data": payload}, {}, {"shape": [n, 57], "class_counts": [n - n_spam, n_spam]}


_GENERATORS = {"mnist": _mnist, "cifar10": _cifar10, "spambase": _spambase}


# --- helpers -------------------------------------------------------------------------------------

def _balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    labels = np.arange(n) % k
    rng.shuffle(labels)
    return labels


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _gzip(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:  # mtime=0: same bytes on every run
        gz.write(payload)
    return buffer.getvalue()


def _pickle_batch(images: np.ndarray, labels: np.ndarray, batch_label: str) -> bytes:
    # the official layout: rows of 3072 bytes, the red plane first, then green, then blue
    return pickle.dumps({"batch_label": batch_label, "labels": labels.astype(int).tolist(),
                         "data": images.reshape(len(labels), -1),
                         "filenames": [f"synthetic_{i:05d}.png" for i in range(len(labels))]}, protocol=2)


def _number(value: float) -> str:
    """Numbers as the official file writes them: ``0``, ``0.64``, ``3.756``."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"

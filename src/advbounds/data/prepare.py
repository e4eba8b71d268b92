"""From verified raw files to ``results/data/<name>.pt``.

UCI sets (Section 4.3.2): features standardized, then a random 70/20/10 train/test/validation split
drawn with the config seed. The thesis standardizes *before* splitting ("The dataset was first
standardized and then split up into 70% training data, 20% test data and 10% validation data"), so
by default (``standardize="all"``) the mean and standard deviation are those of the whole dataset,
as in the thesis. ``standardize="train"`` fits them on the training split only (the usual practice
that keeps test statistics out of training); ``"none"`` keeps raw features. Both vectors are
recorded in ``meta["scaling"]``. The split is a plain (unstratified) random permutation with
``numpy.random.default_rng(seed)``: ``round(train * n)`` training and ``round(test * n)`` test
samples, the rest validation.

Images (Section 5.3): MNIST and CIFAR-10 keep the official train/test split and stay in raw pixel
units [0, 255] as float32 ``[N, C, H, W]``; scaling, if any, is a layer inside the model. A
validation set, if wanted (``image_val_fraction``, 0 in the thesis run), is a seeded random
hold-out of ``round(fraction * n_train)`` training images; both parts keep the file order.

Reading goes through torchvision's own dataset classes (``MNIST``, ``CIFAR10``) on a temporary
copy of the verified files outside ``data_dir``: a prepare job writes nothing but its output. MNIST
is read from whichever form was verified: a ``.gz`` (decompressed into the copy) or torchvision's
extracted file (copied as is). ``meta["raw_files"]`` records, per file, the file used and the
checksum it matched (``verified_by``: ``gz_md5``, ``content_md5``, ...).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advbounds.data.checksums import md5_of_bytes, read_manifest, read_manifest_info
from advbounds.data.errors import ChecksumError, DataError
from advbounds.data.fetch import extract_gz, fetch_raw
from advbounds.data.specs import DatasetSpec, get_spec
from advbounds.io import atomic_write, save_torch

log = logging.getLogger(__name__)

DEFAULT_UCI_SPLIT = {"train": 0.7, "test": 0.2, "val": 0.1}
PREPARED_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "classes", "meta")
STANDARDIZE_CHOICES = ("all", "train", "none")


def prepare_dataset(name: str, data_dir: str | os.PathLike, out_path: str | os.PathLike, *, seed: int,
                    split: dict[str, float] | None = None, offline: bool = False, synthetic: bool = False,
                    allow_partial: bool = False, image_val_fraction: float = 0.0,
                    standardize: str = "all") -> dict:
    """Fetch and verify the raw files of ``name``, prepare tensors, save them atomically; return ``meta``.

    ``split`` (UCI sets only): ``{"train", "test", "val"}`` fractions summing to 1 (default 0.7/0.2/0.1).
    ``image_val_fraction`` (MNIST/CIFAR-10 only): fraction of the training set held out for validation.
    ``synthetic``: verify against the synthetic manifest (smoke runs); Iris and Wine are bundled
    and always real. ``allow_partial``: accept a shortened MNIST training set (see ``fetch``).
    ``standardize`` (UCI only): ``"all"`` (thesis, default), ``"train"`` or ``"none"``.
    Nothing is written unless every check passed; the output is written atomically.
    """
    spec = get_spec(name)
    if standardize not in STANDARDIZE_CHOICES:
        raise ValueError(f"standardize must be one of {STANDARDIZE_CHOICES}, got {standardize!r}")
    uses_files = bool(spec.raw_files)
    synthetic = synthetic and uses_files  # Iris and Wine are bundled: the real data even in smoke runs
    verified = fetch_raw(name, data_dir, offline, synthetic=synthetic, allow_partial=allow_partial)
    dataset_dir = Path(data_dir) / name
    expected = _expected_structure(spec, dataset_dir, synthetic)
    partial = any(info.get("origin") == "partial" for info in verified.values())
    if spec.kind == "uci":
        split = _check_split(split or DEFAULT_UCI_SPLIT)
        features, labels, classes, bundled = _load_uci(spec, dataset_dir, expected)
        prepared, scaling = _standardize_and_split(features, labels, split, seed, standardize)
        split_meta: dict[str, Any] = dict(split)
    else:
        if not 0.0 <= image_val_fraction < 1.0:
            raise ValueError(f"image_val_fraction must be in [0, 1), got {image_val_fraction}")
        (x_train, y_train), (x_test, y_test), classes = _load_images(spec, dataset_dir, synthetic, verified)
        _check_image_counts(spec, len(y_train), len(y_test), expected, partial)
        prepared = _image_split(x_train, y_train, x_test, y_test, image_val_fraction, seed)
        scaling = {"method": "none", "units": "raw pixels [0, 255]"}
        split_meta, bundled = {"val_fraction_of_train": image_val_fraction}, None
    meta = {
        "dataset": name,
        "source": spec.source,
        "urls": sorted({url for raw in spec.raw_files for url in raw.urls}),
        "synthetic": synthetic,
        "partial": partial,
        "raw_files": verified,
        "seed": seed,
        "split": split_meta,
        "scaling": scaling,
        "sizes": {part: int(prepared[f"y_{part}"].numel()) for part in ("train", "val", "test")},
        "versions": _versions(),
    }
    if bundled:
        meta["bundled"] = bundled
    if partial:
        log.warning("%s: prepared from a PARTIAL training set (%d samples); meta['partial'] is true",
                    name, meta["sizes"]["train"] + meta["sizes"]["val"])
    save_torch({**prepared, "classes": [str(c) for c in classes], "meta": meta}, out_path)
    log.info("%s prepared -> %s: %s", name, out_path, meta["sizes"])
    return meta


def load_prepared(path: str | os.PathLike) -> dict:
    """Load a prepared dataset file written by :func:`prepare_dataset` (tensors on the CPU)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    missing = set(PREPARED_KEYS) - set(data) if isinstance(data, dict) else set(PREPARED_KEYS)
    if missing:
        raise DataError(f"{path} is not a prepared dataset (missing {sorted(missing)}); rerun prepare_data")
    return data


def n_classes_of(data: dict) -> int:
    """The number of classes of a prepared data set: its ``classes`` list, else one more than the
    largest label of any non-empty split."""
    classes = data.get("classes")
    if classes:
        return len(classes)
    labels = [data[f"y_{split}"] for split in ("train", "val", "test") if len(data.get(f"y_{split}", []))]
    if not labels:
        raise DataError("the prepared data set has neither a class list nor any labels")
    return int(max(int(y.max()) for y in labels)) + 1


# --- structure checks --------------------------------------------------------------------------

def _expected_structure(spec: DatasetSpec, dataset_dir: Path, synthetic: bool) -> dict:
    """What the files must contain: the official structure, or the one the synthetic writer recorded."""
    if synthetic:
        return dict(read_manifest_info(dataset_dir).get("structure", {}))
    return dict(spec.expected)


def _check_image_counts(spec: DatasetSpec, n_train: int, n_test: int, expected: dict, partial: bool) -> None:
    wanted_train, wanted_test = expected.get("train"), expected.get("test")
    if wanted_test is not None and n_test != wanted_test:
        raise DataError(f"{spec.name}: the test set has {n_test} images, expected {wanted_test}")
    if wanted_train is not None and n_train != wanted_train and not partial:
        raise DataError(f"{spec.name}: the training set has {n_train} images, expected {wanted_train}")


def _check_split(split: dict[str, float]) -> dict[str, float]:
    split = {key: float(split[key]) for key in ("train", "test", "val")}
    if min(split.values()) < 0 or split["train"] <= 0 or split["test"] <= 0:
        raise ValueError(f"split fractions must be >= 0 with train and test > 0, got {split}")
    if abs(sum(split.values()) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {split}")
    return split


# --- UCI -----------------------------------------------------------------------------------------

def _load_uci(spec: DatasetSpec, dataset_dir: Path, expected: dict):
    """Features (float64), labels (int64), class names and, for bundled sets, their provenance."""
    bundled = None
    if spec.name in ("iris", "wine"):
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{spec.name}")()
        features, labels = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
        classes = [str(c) for c in bunch.target_names]
        bundled = {"scikit-learn": metadata.version("scikit-learn"),
                   "data_sha256": hashlib.sha256(features.tobytes() + labels.tobytes()).hexdigest()}
    else:  # spambase: 57 features and the 0/1 label per row, comma-separated, no header
        path = dataset_dir / "spambase.data"
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        if table.shape[1] != 58:
            raise DataError(f"{path}: each row must hold 57 features and a label, found {table.shape[1]} columns")
        if not np.isin(table[:, 57], (0.0, 1.0)).all():
            raise DataError(f"{path}: the last column (spam label) must be 0 or 1")
        features, labels, classes = table[:, :57], table[:, 57].astype(np.int64), list(spec.classes)
    shape, counts = expected.get("shape"), expected.get("class_counts")
    if shape is not None and tuple(features.shape) != tuple(shape):
        raise DataError(f"{spec.name}: expected {shape[0]} rows x {shape[1]} features, found {features.shape}")
    if counts is not None and np.bincount(labels, minlength=len(counts)).tolist() != list(counts):
        raise DataError(f"{spec.name}: expected class counts {list(counts)}, "
                        f"found {np.bincount(labels).tolist()}")
    return features, labels, classes, bundled


def _standardize_and_split(features: np.ndarray, labels: np.ndarray, split: dict[str, float],
                           seed: int, standardize: str = "all") -> tuple[dict, dict]:
    n = len(labels)
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(split["train"] * n))
    n_test = min(int(round(split["test"] * n)), n - n_train)
    parts = {"train": order[:n_train], "test": order[n_train:n_train + n_test], "val": order[n_train + n_test:]}
    if standardize == "none":
        mean, std = np.zeros(features.shape[1]), np.ones(features.shape[1])
    else:
        fit = features if standardize == "all" else features[parts["train"]]
        mean, std = fit.mean(axis=0), fit.std(axis=0)  # population std (ddof=0), as StandardScaler
        std[std == 0] = 1.0  # a constant feature stays 0 instead of becoming NaN
    standardized = (features - mean) / std
    prepared = {}
    for part, idx in parts.items():
        prepared[f"x_{part}"] = torch.tensor(standardized[idx], dtype=torch.float32)
        prepared[f"y_{part}"] = torch.tensor(labels[idx], dtype=torch.int64)
    scaling = {"method": "standardize" if standardize != "none" else "none", "fit_on": standardize,
               "standardized_before_split": standardize == "all", "mean": mean.tolist(), "std": std.tolist()}
    return prepared, scaling


# --- images --------------------------------------------------------------------------------------

def _image_split(x_train, y_train, x_test, y_test, val_fraction: float, seed: int) -> dict:
    n_val = int(round(val_fraction * len(y_train)))
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return {"x_train": x_train[train_idx], "y_train": y_train[train_idx],
            "x_val": x_train[val_idx], "y_val": y_train[val_idx], "x_test": x_test, "y_test": y_test}


def _load_images(spec: DatasetSpec, dataset_dir: Path, synthetic: bool, verified: dict[str, dict]):
    with tempfile.TemporaryDirectory(prefix=f"advbounds-{spec.name}-") as tmp:
        if spec.name == "mnist":
            return (*_load_mnist(dataset_dir, Path(tmp), verified), list(spec.classes))
        return _load_cifar10(spec, dataset_dir, Path(tmp), synthetic)


def _load_mnist(dataset_dir: Path, tmp: Path, verified: dict[str, dict]):
    """Put the verified files, decompressed, where torchvision's MNIST class reads them, and read them.

    ``verified`` is :func:`fetch_raw`'s record: for each canonical ``.gz`` relpath, the ``file``
    that was verified -- the ``.gz`` (decompressed here) or the extracted file (copied as is).
    """
    from torchvision.datasets import MNIST

    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, _ in MNIST.resources:
        relpath = f"MNIST/raw/{name}"
        source = dataset_dir / verified[relpath].get("file", relpath)
        target = raw / name.removesuffix(".gz")
        if source.suffix == ".gz":
            extract_gz(source, target)
        else:
            shutil.copyfile(source, target)
    splits = []
    for train in (True, False):
        ds = MNIST(str(tmp), train=train, download=False)
        splits.append((ds.data.unsqueeze(1).to(torch.float32), ds.targets.to(torch.int64)))
    return splits


def _load_cifar10(spec: DatasetSpec, dataset_dir: Path, tmp: Path, synthetic: bool):
    """Take the needed batches out of the verified archive and read them with torchvision's CIFAR10.

    Each batch is checked against its own md5 as it is unpacked (torchvision's per-batch md5s, or
    the synthetic manifest's), then torchvision checks them once more. Only the listed members are
    read, by exact name, so a crafted archive cannot write outside the temporary folder.
    """
    from torchvision.datasets import CIFAR10

    (raw,) = spec.raw_files
    members = dict(raw.members)
    if synthetic:
        manifest = read_manifest(dataset_dir)
        members = {member: manifest.get(member, "(not listed in the synthetic manifest)") for member in members}
    archive_path = dataset_dir / raw.relpath
    with tarfile.open(archive_path, "r:gz") as archive:
        for member, md5 in members.items():
            try:
                handle = archive.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise DataError(f"{archive_path} has no file {member}; it is not the CIFAR-10 python archive")
            payload = handle.read()
            actual = md5_of_bytes(payload)
            if actual != md5:
                raise ChecksumError(Path(f"{archive_path}!{member}"), md5, actual)
            with atomic_write(tmp / member, "wb") as out:
                out.write(payload)
    base = CIFAR10.base_folder + "/"
    dataset_cls = type("VerifiedCIFAR10", (CIFAR10,), {
        "train_list": [[m.removeprefix(base), members[m]] for m in members if "data_batch" in m],
        "test_list": [[m.removeprefix(base), members[m]] for m in members if "test_batch" in m],
        "meta": {**CIFAR10.meta, "md5": members[base + CIFAR10.meta["filename"]]},
    })
    splits = []
    for train in (True, False):
        ds = dataset_cls(str(tmp), train=train, download=False)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous().to(torch.float32)  # NHWC -> NCHW
        splits.append((x, torch.tensor(ds.targets, dtype=torch.int64)))
    return (*splits, [str(c) for c in ds.classes])


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("advbounds", "torch", "torchvision", "numpy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            versions[package] = "unknown"
    return versions

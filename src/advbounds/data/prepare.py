"""From verified raw files to ``results/data/<name>.pt``.

UCI sets (Section 4.3.2): features standardized, then a random 70/20/10 train/test/validation split
drawn with the config seed. The thesis standardizes *before* splitting ("The dataset was first
standardized and then split up"), so the mean and standard deviation are those of the whole dataset;
we follow it and record both in ``meta``.

Images (Section 5.3): MNIST and CIFAR-10 keep the official train/test split and stay in raw pixel
units [0, 255] as float32 ``[N, C, H, W]``; scaling, if any, is a layer inside the model.
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from advbounds.data.checksums import read_manifest
from advbounds.data.errors import DataError
from advbounds.data.fetch import extract_gz, fetch_raw
from advbounds.data.specs import get_spec
from advbounds.io import save_torch

log = logging.getLogger(__name__)

DEFAULT_UCI_SPLIT = {"train": 0.7, "test": 0.2, "val": 0.1}


def prepare_dataset(name: str, data_dir: str | os.PathLike, out_path: str | os.PathLike, *, seed: int,
                    split: dict[str, float] | None = None, offline: bool = False, synthetic: bool = False,
                    allow_partial: bool = False, image_val_fraction: float = 0.0) -> dict:
    """Fetch and verify the raw files of ``name``, prepare tensors, save them; return the meta dict."""
    spec = get_spec(name)
    verified = fetch_raw(name, data_dir, offline, synthetic=synthetic, allow_partial=allow_partial)
    if spec.kind == "uci":
        features, labels, classes = _load_uci(name, Path(data_dir))
        prepared, scaling = _standardize_and_split(features, labels, split or DEFAULT_UCI_SPLIT, seed)
    else:
        (x_train, y_train), (x_test, y_test), classes = _load_images(name, Path(data_dir), synthetic)
        prepared = _image_split(x_train, y_train, x_test, y_test, image_val_fraction, seed)
        scaling = {"units": "raw pixels [0, 255]"}
    meta = {
        "dataset": name,
        "source": spec.source,
        "synthetic": synthetic,
        "raw_files": verified,
        "partial": any(info.get("origin") == "partial" for info in verified.values()),
        "seed": seed,
        "split": (split or DEFAULT_UCI_SPLIT) if spec.kind == "uci" else {"val_fraction_of_train": image_val_fraction},
        "scaling": scaling,
        "sizes": {part: int(prepared[f"y_{part}"].numel()) for part in ("train", "val", "test")},
    }
    save_torch({**prepared, "classes": list(classes), "meta": meta}, out_path)
    log.info("%s prepared: %s", name, meta["sizes"])
    return meta


def load_prepared(path: str | os.PathLike) -> dict:
    """Load a prepared dataset file written by :func:`prepare_dataset`."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    missing = {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "classes", "meta"} - set(data)
    if missing:
        raise DataError(f"{path} is not a prepared dataset (missing {sorted(missing)}); rerun prepare_data")
    return data


def _load_uci(name: str, data_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if name in ("iris", "wine"):
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        return bunch.data.astype(np.float64), bunch.target.astype(np.int64), [str(c) for c in bunch.target_names]
    table = np.loadtxt(data_dir / name / "spambase.data", delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != 58:
        raise DataError(f"spambase.data must have 57 features and a label per row, found {table.shape[1]} columns")
    return table[:, :57], table[:, 57].astype(np.int64), list(get_spec(name).classes)


def _standardize_and_split(features: np.ndarray, labels: np.ndarray, split: dict[str, float],
                           seed: int) -> tuple[dict, dict]:
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays 0 instead of becoming NaN
    standardized = (features - mean) / std
    order = np.random.default_rng(seed).permutation(len(labels))
    n_train = int(round(split["train"] * len(labels)))
    n_test = int(round(split["test"] * len(labels)))
    parts = {"train": order[:n_train], "test": order[n_train:n_train + n_test], "val": order[n_train + n_test:]}
    prepared = {}
    for part, idx in parts.items():
        prepared[f"x_{part}"] = torch.tensor(standardized[idx], dtype=torch.float32)
        prepared[f"y_{part}"] = torch.tensor(labels[idx], dtype=torch.int64)
    return prepared, {"standardized_before_split": True, "mean": mean.tolist(), "std": std.tolist()}


def _image_split(x_train, y_train, x_test, y_test, val_fraction: float, seed: int) -> dict:
    n_val = int(round(val_fraction * len(y_train)))
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return {"x_train": x_train[train_idx], "y_train": y_train[train_idx],
            "x_val": x_train[val_idx], "y_val": y_train[val_idx], "x_test": x_test, "y_test": y_test}


def _load_images(name: str, data_dir: Path, synthetic: bool):
    with tempfile.TemporaryDirectory(prefix=f"advbounds-{name}-") as tmp:
        if name == "mnist":
            return (*_load_mnist(data_dir / "mnist", Path(tmp)), get_spec(name).classes)
        return (*_load_cifar10(data_dir / "cifar10", Path(tmp), synthetic), get_spec(name).classes)


def _load_mnist(dataset_dir: Path, tmp: Path):
    """Decompress the verified .gz files and read them with torchvision's MNIST class."""
    from torchvision.datasets import MNIST

    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in sorted((dataset_dir / "MNIST" / "raw").glob("*-ubyte.gz")):
        extract_gz(gz, raw / gz.name.removesuffix(".gz"))
    splits = []
    for train in (True, False):
        ds = MNIST(str(tmp), train=train, download=False)
        splits.append((ds.data.unsqueeze(1).to(torch.float32), ds.targets.to(torch.int64)))
    return splits


def _load_cifar10(dataset_dir: Path, tmp: Path, synthetic: bool):
    """Unpack the verified archive and read it with torchvision's CIFAR10 class.

    torchvision re-checks every batch file against its official md5; synthetic stand-ins instead
    carry their own md5s in the manifest, which a thin subclass substitutes.
    """
    from torchvision.datasets import CIFAR10

    with tarfile.open(dataset_dir / CIFAR10.filename, "r:gz") as archive:
        archive.extractall(tmp, filter="data")
    dataset_cls = CIFAR10
    if synthetic:
        manifest = read_manifest(dataset_dir)

        def listed(entries):
            return [[fname, manifest[f"{CIFAR10.base_folder}/{fname}"]] for fname, _ in entries]

        dataset_cls = type("SyntheticCIFAR10", (CIFAR10,), {
            "train_list": listed(CIFAR10.train_list), "test_list": listed(CIFAR10.test_list),
            "meta": {**CIFAR10.meta, "md5": manifest[f"{CIFAR10.base_folder}/{CIFAR10.meta['filename']}"]},
        })
    splits = []
    for train in (True, False):
        ds = dataset_cls(str(tmp), train=train, download=False)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous().to(torch.float32)
        splits.append((x, torch.tensor(ds.targets, dtype=torch.int64)))
    return splits

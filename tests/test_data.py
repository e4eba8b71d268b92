"""The data layer: checksums, offline behaviour, preparation, synthetic stand-ins, real files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from advbounds.data import (ChecksumError, DatasetUnavailableError, fetch_raw, load_prepared, prepare_dataset,
                            raw_files, write_synthetic)
from advbounds.data import fetch as fetch_module
from advbounds.data.fetch import read_idx_header
from advbounds.data.specs import MNIST_TRAIN_FILES, SPAMBASE_URL, get_spec

SPLIT = {"train": 0.7, "test": 0.2, "val": 0.1}


def stage_mnist(shared: Path, data_dir: Path, partial_train: bool = False) -> Path:
    """Copy the real MNIST files into torchvision's raw layout under data_dir."""
    raw = data_dir / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared / "mnist" / name, raw / name)
    if partial_train:
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            shutil.copy(shared / "mnist-train-first14262" / name, raw / name)
    return raw


# --- real files (skipped where ../shared/data is absent) -------------------------------------

def test_mnist_test_set_is_verified_against_the_published_md5(shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_mnist(shared_data_dir, tmp_path)
    spec = {r.relpath: r for r in get_spec("mnist").raw_files}
    info = fetch_module.verify_raw_file("mnist", spec["MNIST/raw/t10k-images-idx3-ubyte.gz"], tmp_path / "mnist")
    assert info == {"md5": "9fb629c4189551a2d022fa330f9573f3", "origin": "official"}
    magic, dims = read_idx_header(raw / "t10k-images-idx3-ubyte.gz")
    assert (magic, dims) == (2051, (10000, 28, 28))


def test_partial_mnist_prepares_only_when_allowed(shared_data_dir: Path, tmp_path: Path) -> None:
    stage_mnist(shared_data_dir, tmp_path, partial_train=True)
    out = tmp_path / "mnist.pt"
    with pytest.raises(ChecksumError, match="allow_partial_mnist_train"):
        prepare_dataset("mnist", tmp_path, out, seed=0, offline=True)
    assert not out.exists()
    meta = prepare_dataset("mnist", tmp_path, out, seed=0, offline=True, allow_partial=True)
    data = load_prepared(out)
    assert meta["partial"] is True
    assert data["x_test"].shape == (10000, 1, 28, 28) and data["x_train"].shape == (14262, 1, 28, 28)
    assert data["x_test"].dtype == torch.float32
    assert data["x_test"].min() == 0 and data["x_test"].max() == 255  # raw pixel units
    assert data["y_test"].bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_spambase_has_4601_rows_57_features_1813_spam(shared_data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "spambase").mkdir()
    shutil.copy(shared_data_dir / "spambase" / "spambase.data", tmp_path / "spambase" / "spambase.data")
    data = load_prepared(_prepare(tmp_path, "spambase"))
    features = torch.cat([data["x_train"], data["x_test"], data["x_val"]])
    labels = torch.cat([data["y_train"], data["y_test"], data["y_val"]])
    assert features.shape == (4601, 57)
    assert int(labels.sum()) == 1813


def test_official_crlf_spambase_verifies_like_the_lf_copy(shared_data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "spambase").mkdir()
    lf = (shared_data_dir / "spambase" / "spambase.data").read_bytes()
    (tmp_path / "spambase" / "spambase.data").write_bytes(lf.replace(b"\n", b"\r\n"))
    assert fetch_raw("spambase", tmp_path, offline=True)["spambase.data"]["origin"] == "official"


# --- checksums and offline behaviour ---------------------------------------------------------

def test_a_flipped_byte_fails_the_checksum_and_nothing_is_written(tmp_path: Path) -> None:
    write_synthetic("spambase", tmp_path, seed=0)
    path = tmp_path / "spambase" / "spambase.data"
    content = bytearray(path.read_bytes())
    content[10] = ord("9") if content[10] != ord("9") else ord("8")
    path.write_bytes(bytes(content))
    out = tmp_path / "out" / "spambase.pt"
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        prepare_dataset("spambase", tmp_path, out, seed=0, offline=True, synthetic=True)
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no temporary leftovers


def test_a_truncated_file_fails_the_checksum(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes={"mnist_train": 20, "mnist_test": 20})
    path = tmp_path / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ChecksumError):
        fetch_raw("mnist", tmp_path, offline=True, synthetic=True)


def test_synthetic_files_never_pass_as_the_real_dataset(tmp_path: Path) -> None:
    write_synthetic("spambase", tmp_path, seed=0)
    with pytest.raises(ChecksumError, match="cc4b58cc4011ccc4526e31d9b483ace9"):
        fetch_raw("spambase", tmp_path, offline=True, synthetic=False)


@pytest.mark.parametrize("dataset", ["spambase", "mnist", "cifar10"])
def test_missing_file_offline_names_dataset_url_and_path(tmp_path: Path, dataset: str) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        fetch_raw(dataset, tmp_path, offline=True)
    message = str(caught.value)
    first = get_spec(dataset).raw_files[0]
    assert dataset in message and first.urls[0] in message
    assert str((tmp_path / dataset / first.relpath).resolve()) in message


def test_download_is_verified_before_it_is_moved_into_place(tmp_path: Path, monkeypatch) -> None:
    """A download that does not match the checksum is rejected and leaves no file behind."""
    import torchvision.datasets.utils as tv_utils

    good = tmp_path / "src" / "spambase"
    write_synthetic("spambase", tmp_path / "src", seed=0)

    def fake_download(url, root, filename, md5=None):
        assert url == SPAMBASE_URL
        shutil.copy(good / "spambase.data", Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError, match="downloaded file has md5"):
        fetch_raw("spambase", data_dir, offline=False)
    assert [p for p in (data_dir / "spambase").rglob("*") if p.is_file()] == []


def test_download_with_the_right_content_lands_in_place(shared_data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def fake_download(url, root, filename, md5=None):
        shutil.copy(shared_data_dir / "spambase" / "spambase.data", Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    info = fetch_raw("spambase", tmp_path, offline=False)
    assert info["spambase.data"]["md5"] == "cc4b58cc4011ccc4526e31d9b483ace9"
    assert (tmp_path / "spambase" / "spambase.data").exists()


def test_raw_file_layout() -> None:
    assert raw_files("iris") == [] and raw_files("wine") == []
    assert raw_files("spambase") == ["spambase/spambase.data"]
    assert raw_files("cifar10") == ["cifar10/cifar-10-python.tar.gz"]
    assert sorted(raw_files("mnist")) == sorted(f"mnist/{p}" for p in (
        "MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz", *MNIST_TRAIN_FILES))
    with pytest.raises(KeyError, match="known datasets"):
        raw_files("imagenet")


# --- preparation -------------------------------------------------------------------------------

def _prepare(data_dir: Path, name: str, seed: int = 0, synthetic: bool = False) -> Path:
    out = data_dir / "out" / f"{name}.pt"
    prepare_dataset(name, data_dir, out, seed=seed, split=SPLIT, offline=True, synthetic=synthetic)
    return out


@pytest.mark.parametrize("name, n, d", [("iris", 150, 4), ("wine", 178, 13)])
def test_uci_split_is_70_20_10_standardized_and_seeded(tmp_path: Path, name: str, n: int, d: int) -> None:
    data = load_prepared(_prepare(tmp_path, name, seed=3))
    sizes = [len(data[f"y_{p}"]) for p in ("train", "test", "val")]
    assert sum(sizes) == n and sizes[0] == round(0.7 * n) and sizes[1] == round(0.2 * n)
    everything = torch.cat([data["x_train"], data["x_test"], data["x_val"]]).double()
    assert everything.shape[1] == d
    np.testing.assert_allclose(everything.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(everything.std(0, unbiased=False), 1, atol=1e-5)
    again = load_prepared(_prepare(tmp_path / "again", name, seed=3))
    other = load_prepared(_prepare(tmp_path / "other", name, seed=4))
    assert torch.equal(data["x_train"], again["x_train"])
    assert not torch.equal(data["y_train"], other["y_train"]) or not torch.equal(data["x_train"], other["x_train"])


@pytest.mark.parametrize("name, shape", [("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_synthetic_images_round_trip_through_the_real_loaders(tmp_path: Path, name: str, shape) -> None:
    sizes = {f"{name}_train": 50, f"{name}_test": 20}
    write_synthetic(name, tmp_path, seed=1, sizes=sizes)
    data = load_prepared(_prepare(tmp_path, name, synthetic=True))
    assert data["x_train"].shape == (50, *shape) and data["x_test"].shape == (20, *shape)
    assert data["x_train"].dtype == torch.float32 and 0 <= data["x_train"].min() and data["x_train"].max() <= 255
    assert set(data["y_train"].tolist()) == set(range(10))
    assert data["meta"]["synthetic"] is True and len(data["classes"]) == 10


def test_synthetic_writer_is_deterministic(tmp_path: Path) -> None:
    a = write_synthetic("cifar10", tmp_path / "a", seed=5, sizes={"cifar10_train": 20, "cifar10_test": 10})
    b = write_synthetic("cifar10", tmp_path / "b", seed=5, sizes={"cifar10_train": 20, "cifar10_test": 10})
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_synthetic_mnist_is_valid_idx(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes={"mnist_train": 30, "mnist_test": 12})
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    assert read_idx_header(raw / "train-images-idx3-ubyte.gz") == (2051, (30, 28, 28))
    assert read_idx_header(raw / "t10k-labels-idx1-ubyte.gz") == (2049, (12,))
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz") as handle:
        assert len(handle.read()) == 8 + 12

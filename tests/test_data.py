"""The data layer: checksums, offline behaviour, downloads, preparation, synthetic stand-ins, real files."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from advbounds.data import (DATASETS, MNIST_TRAIN_FILES, ChecksumError, DataError, DatasetUnavailableError,
                            check_partial_mnist, fetch_raw, get_spec, load_prepared, prepare_dataset,
                            raw_files, read_idx_header, verify_raw_file, write_synthetic)
from advbounds.data.__main__ import main as cli_main
from advbounds.data.checksums import SYNTHETIC_MANIFEST, md5_of, md5_of_bytes
from advbounds.data.specs import SPAMBASE_URL

SPLIT = {"train": 0.7, "test": 0.2, "val": 0.1}
# Published by torchvision (torchvision.datasets.MNIST.resources); written out here so that a changed
# table in torchvision would be noticed.
MNIST_T10K_IMAGES_MD5 = "9fb629c4189551a2d022fa330f9573f3"
MNIST_T10K_LABELS_MD5 = "ec29112dd5afa0611ce80d1b7f02629c"
MNIST_TRAIN_LABELS_MD5 = "d53e105ee54ea40749a09fcbcd1e9432"
SMALL = {"mnist_train": 40, "mnist_test": 20, "cifar10_train": 30, "cifar10_test": 20, "spambase_rows": 60}


def stage_mnist(shared: Path, data_dir: Path, partial_train: bool = False, full_train_labels: bool = False) -> Path:
    """Copy the real MNIST files into torchvision's raw layout under data_dir."""
    raw = data_dir / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared / "mnist" / name, raw / name)
    if partial_train:
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            shutil.copy(shared / "mnist-train-first14262" / name, raw / name)
    if full_train_labels:
        shutil.copy(shared / "mnist" / "train-labels-idx1-ubyte.gz", raw / "train-labels-idx1-ubyte.gz")
    return raw


def stage_spambase(shared: Path, data_dir: Path, crlf: bool = False) -> Path:
    path = data_dir / "spambase" / "spambase.data"
    path.parent.mkdir(parents=True)
    content = (shared / "spambase" / "spambase.data").read_bytes()
    path.write_bytes(content.replace(b"\n", b"\r\n") if crlf else content)
    return path


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def flip_byte(path: Path, offset: int) -> None:
    content = bytearray(path.read_bytes())
    content[offset] ^= 0x01
    path.write_bytes(bytes(content))


def _prepare(data_dir: Path, name: str, seed: int = 0, synthetic: bool = False, **kwargs) -> Path:
    out = data_dir / "out" / f"{name}.pt"
    prepare_dataset(name, data_dir, out, seed=seed, split=SPLIT, offline=True, synthetic=synthetic, **kwargs)
    return out


# --- real files (skipped where ../shared/data is absent) -------------------------------------

def test_torchvision_publishes_the_md5s_we_verify_against() -> None:
    spec = {r.relpath: r.md5 for r in get_spec("mnist").raw_files}
    assert spec["MNIST/raw/t10k-images-idx3-ubyte.gz"] == MNIST_T10K_IMAGES_MD5
    assert spec["MNIST/raw/t10k-labels-idx1-ubyte.gz"] == MNIST_T10K_LABELS_MD5
    assert spec["MNIST/raw/train-labels-idx1-ubyte.gz"] == MNIST_TRAIN_LABELS_MD5
    cifar = get_spec("cifar10").raw_files[0]
    assert cifar.md5 == "c58f30108f718f92721af3b95e74349a" and len(cifar.members) == 7


def test_mnist_test_set_is_verified_against_the_published_md5(shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_mnist(shared_data_dir, tmp_path)
    spec = {r.relpath: r for r in get_spec("mnist").raw_files}
    for name, md5 in (("t10k-images-idx3-ubyte.gz", MNIST_T10K_IMAGES_MD5),
                      ("t10k-labels-idx1-ubyte.gz", MNIST_T10K_LABELS_MD5)):
        info = verify_raw_file("mnist", spec[f"MNIST/raw/{name}"], tmp_path / "mnist")
        assert info == {"md5": md5, "origin": "official", "verified_by": "gz_md5", "file": f"MNIST/raw/{name}"}
    assert read_idx_header(raw / "t10k-images-idx3-ubyte.gz") == (2051, (10000, 28, 28))
    assert read_idx_header(raw / "t10k-labels-idx1-ubyte.gz") == (2049, (10000,))


def test_a_flipped_byte_in_real_mnist_fails_the_published_md5(shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_mnist(shared_data_dir, tmp_path, partial_train=True)
    flip_byte(raw / "t10k-images-idx3-ubyte.gz", 5000)
    out = tmp_path / "out" / "mnist.pt"
    with pytest.raises(ChecksumError, match=MNIST_T10K_IMAGES_MD5) as caught:
        prepare_dataset("mnist", tmp_path, out, seed=0, offline=True, allow_partial=True)
    assert caught.value.path == raw / "t10k-images-idx3-ubyte.gz" and caught.value.expected == MNIST_T10K_IMAGES_MD5
    assert files_under(tmp_path / "out") == []


def test_partial_mnist_prepares_only_when_allowed(shared_data_dir: Path, tmp_path: Path, caplog) -> None:
    stage_mnist(shared_data_dir, tmp_path, partial_train=True)
    out = tmp_path / "mnist.pt"
    with pytest.raises(ChecksumError, match="allow_partial_mnist_train"):
        prepare_dataset("mnist", tmp_path, out, seed=0, offline=True)
    assert not out.exists()
    meta = prepare_dataset("mnist", tmp_path, out, seed=0, offline=True, allow_partial=True)
    assert "NOT the official file" in caplog.text
    data = load_prepared(out)
    assert meta["partial"] is True and data["meta"]["partial"] is True
    images = meta["raw_files"]["MNIST/raw/train-images-idx3-ubyte.gz"]
    assert images == {"md5": "ed96d61b5dc5d8a514f4fbbe898f3dd2", "origin": "partial", "verified_by": "idx_structure",
                      "official_md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                      "official_content_md5": "6bbc9ace898e44ae57da46a324031adb", "samples": 14262,
                      "file": "MNIST/raw/train-images-idx3-ubyte.gz"}
    assert meta["raw_files"]["MNIST/raw/t10k-images-idx3-ubyte.gz"]["origin"] == "official"
    assert data["x_test"].shape == (10000, 1, 28, 28) and data["x_train"].shape == (14262, 1, 28, 28)
    assert data["x_val"].shape == (0, 1, 28, 28)
    assert data["x_test"].dtype == torch.float32 and data["y_test"].dtype == torch.int64
    assert data["x_test"].min() == 0 and data["x_test"].max() == 255  # raw pixel units
    assert data["y_test"].bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_partial_mnist_needs_matching_label_count(shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_mnist(shared_data_dir, tmp_path, full_train_labels=True)
    shutil.copy(shared_data_dir / "mnist-train-first14262" / "train-images-idx3-ubyte.gz", raw)
    with pytest.raises(ChecksumError, match="14262 images and 60000 labels"):
        fetch_raw("mnist", tmp_path, offline=True, allow_partial=True)


def test_truncated_partial_mnist_is_rejected_even_when_allowed(shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_mnist(shared_data_dir, tmp_path, partial_train=True)
    images = raw / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-1000])
    out = tmp_path / "out" / "mnist.pt"
    with pytest.raises(ChecksumError, match="not a usable partial"):
        prepare_dataset("mnist", tmp_path, out, seed=0, offline=True, allow_partial=True)
    assert not out.exists()


def test_spambase_has_4601_rows_57_features_1813_spam(shared_data_dir: Path, tmp_path: Path) -> None:
    stage_spambase(shared_data_dir, tmp_path)
    data = load_prepared(_prepare(tmp_path, "spambase"))
    features = torch.cat([data["x_train"], data["x_test"], data["x_val"]])
    labels = torch.cat([data["y_train"], data["y_test"], data["y_val"]])
    assert features.shape == (4601, 57)
    assert int(labels.sum()) == 1813
    assert [len(data[f"y_{p}"]) for p in ("train", "test", "val")] == [3221, 920, 460]
    assert data["classes"] == ["not spam", "spam"]
    np.testing.assert_allclose(features.double().mean(0), 0, atol=1e-5)


def test_official_crlf_spambase_verifies_like_the_lf_copy(shared_data_dir: Path, tmp_path: Path) -> None:
    path = stage_spambase(shared_data_dir, tmp_path, crlf=True)
    # the derivation in specs.py: the CRLF form is 702,942 bytes, the official file's size
    assert path.stat().st_size == 702942 and md5_of(path) == "7459fd63f2b4961fbeedf7f83ef41c3b"
    assert fetch_raw("spambase", tmp_path, offline=True)["spambase.data"] == {
        "md5": "cc4b58cc4011ccc4526e31d9b483ace9", "origin": "official", "verified_by": "md5",
        "file": "spambase.data"}
    data = load_prepared(_prepare(tmp_path, "spambase"))
    assert sum(len(data[f"y_{p}"]) for p in ("train", "test", "val")) == 4601


def test_a_changed_spambase_value_fails_even_with_the_right_shape(shared_data_dir: Path, tmp_path: Path) -> None:
    path = stage_spambase(shared_data_dir, tmp_path)
    path.write_bytes(path.read_bytes().replace(b"0.64", b"0.65", 1))
    with pytest.raises(ChecksumError, match="cc4b58cc4011ccc4526e31d9b483ace9"):
        fetch_raw("spambase", tmp_path, offline=True)


# --- checksums and offline behaviour ---------------------------------------------------------

@pytest.mark.parametrize("name, relpath, offset", [
    ("spambase", "spambase.data", 10),
    ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte.gz", 30),
    ("cifar10", "cifar-10-python.tar.gz", 200),
])
def test_a_flipped_byte_fails_the_checksum_and_nothing_is_written(tmp_path: Path, name: str, relpath: str,
                                                                  offset: int) -> None:
    write_synthetic(name, tmp_path, seed=0, sizes=SMALL)
    path = tmp_path / name / relpath
    flip_byte(path, offset)
    out = tmp_path / "out" / f"{name}.pt"
    with pytest.raises(ChecksumError, match="checksum mismatch") as caught:
        prepare_dataset(name, tmp_path, out, seed=0, offline=True, synthetic=True)
    assert caught.value.path == path and caught.value.expected != caught.value.actual
    assert str(path) in str(caught.value)
    assert not out.exists()
    assert files_under(tmp_path / "out") == []  # no temporary leftovers either


def test_a_truncated_file_fails_the_checksum(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes=SMALL)
    path = tmp_path / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ChecksumError):
        fetch_raw("mnist", tmp_path, offline=True, synthetic=True)


def test_a_corrupt_batch_inside_the_archive_is_rejected(tmp_path: Path) -> None:
    """Each CIFAR batch is checked against its own md5 (torchvision's, or the manifest's) when unpacked."""
    write_synthetic("cifar10", tmp_path, seed=0, sizes=SMALL)
    manifest_path = tmp_path / "cifar10" / SYNTHETIC_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["cifar-10-batches-py/data_batch_3"] = "0" * 32
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError, match="data_batch_3"):
        _prepare(tmp_path, "cifar10", synthetic=True)


def test_synthetic_files_never_pass_as_the_real_dataset(tmp_path: Path) -> None:
    write_synthetic("spambase", tmp_path, seed=0, sizes=SMALL)
    with pytest.raises(ChecksumError, match="cc4b58cc4011ccc4526e31d9b483ace9"):
        fetch_raw("spambase", tmp_path, offline=True, synthetic=False)
    write_synthetic("mnist", tmp_path, seed=0, sizes=SMALL)
    with pytest.raises(ChecksumError):  # not even with allow_partial: the test files must be official
        fetch_raw("mnist", tmp_path, offline=True, synthetic=False, allow_partial=True)


@pytest.mark.parametrize("dataset", ["spambase", "mnist", "cifar10"])
def test_missing_file_offline_names_dataset_url_and_path(tmp_path: Path, dataset: str) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        fetch_raw(dataset, tmp_path / "resources", offline=True)
    message = str(caught.value)
    assert repr(dataset) in message and "offline" in message
    for raw in get_spec(dataset).raw_files:  # every missing file, every mirror, the exact path
        assert str((tmp_path / "resources" / dataset / raw.relpath).resolve()) in message
        for url in raw.urls:
            assert url in message
    assert not (tmp_path / "resources").exists()  # failed at once, touched nothing


def test_only_the_missing_file_is_reported(shared_data_dir: Path, tmp_path: Path) -> None:
    stage_mnist(shared_data_dir, tmp_path)
    with pytest.raises(DatasetUnavailableError) as caught:
        fetch_raw("mnist", tmp_path, offline=True)
    assert {path.name for _, path in caught.value.missing} == {Path(p).name for p in MNIST_TRAIN_FILES}
    assert "t10k" not in str(caught.value)


def test_spambase_url_is_the_uci_archive() -> None:
    assert get_spec("spambase").raw_files[0].urls == (SPAMBASE_URL,)
    assert SPAMBASE_URL == "https://archive.ics.uci.edu/ml/machine-learning-databases/spambase/spambase.data"


def test_synthetic_run_with_no_stand_ins_says_how_to_write_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="write_synthetic"):
        fetch_raw("mnist", tmp_path, offline=False, synthetic=True)  # synthetic runs never download


# --- downloads (no network: a monkeypatched torchvision helper, or file:// mirrors) --------------

def test_a_download_failing_its_checksum_is_rejected_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets.utils as tv_utils

    source = tmp_path / "src"
    write_synthetic("spambase", source, seed=0, sizes=SMALL)
    calls = []

    def fake_download(url, root, filename, md5=None):
        calls.append(url)
        shutil.copy(source / "spambase" / "spambase.data", Path(root) / filename)

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    data_dir = tmp_path / "data"
    with pytest.raises(ChecksumError, match="discarded") as caught:
        fetch_raw("spambase", data_dir, offline=False)
    assert calls == [SPAMBASE_URL] and caught.value.expected == "cc4b58cc4011ccc4526e31d9b483ace9"
    assert files_under(data_dir) == []  # no file, no temporary, no download folder


def test_torchvision_md5_error_is_reported_as_a_checksum_error(tmp_path: Path, monkeypatch) -> None:
    """torchvision's download_url checks the md5 and raises RuntimeError; we report expected/actual."""
    import torchvision.datasets.utils as tv_utils

    def fake_download(url, root, filename, md5=None):
        assert md5 == MNIST_T10K_LABELS_MD5 or md5 is not None
        (Path(root) / filename).write_bytes(b"not mnist")
        raise RuntimeError("File not found or corrupted.")

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    with pytest.raises(ChecksumError, match="discarded"):
        fetch_raw("mnist", tmp_path, offline=False)
    assert files_under(tmp_path) == []


def test_download_with_the_right_content_lands_in_place(shared_data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def fake_download(url, root, filename, md5=None):
        assert md5 is None  # the spambase md5 is of normalized text: we verify it ourselves
        data = (shared_data_dir / "spambase" / "spambase.data").read_bytes()
        (Path(root) / filename).write_bytes(data.replace(b"\n", b"\r\n"))  # the official CRLF form

    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    info = fetch_raw("spambase", tmp_path, offline=False)
    assert info["spambase.data"]["md5"] == "cc4b58cc4011ccc4526e31d9b483ace9"
    assert files_under(tmp_path) == [tmp_path / "spambase" / "spambase.data"]


def _file_mirrors(monkeypatch, name: str, mirrors: list[Path]) -> None:
    spec = get_spec(name)
    files = tuple(dataclasses.replace(raw, urls=tuple((m / Path(raw.relpath).name).as_uri() for m in mirrors))
                  for raw in spec.raw_files)
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(spec, raw_files=files))


def test_download_falls_back_to_the_next_mirror(tmp_path: Path, monkeypatch) -> None:
    """Through file:// mirrors: the first mirror is missing the files, the second serves them."""
    source = tmp_path / "mirror"
    write_synthetic("mnist", source, seed=3, sizes=SMALL)
    _file_mirrors(monkeypatch, "mnist", [tmp_path / "dead-mirror", source / "mnist" / "MNIST" / "raw"])
    # the official md5s do not fit synthetic files, so vouch for these ones in the spec itself
    spec = get_spec("mnist")
    md5s = json.loads((source / "mnist" / SYNTHETIC_MANIFEST).read_text())["files"]
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(
        spec, raw_files=tuple(dataclasses.replace(r, md5=md5s[r.relpath]) for r in spec.raw_files)))
    data_dir = tmp_path / "data"
    verified = fetch_raw("mnist", data_dir, offline=False)
    assert all(info["origin"] == "official" for info in verified.values())
    for rel in verified:
        assert (data_dir / "mnist" / rel).read_bytes() == (source / "mnist" / rel).read_bytes()
    assert len(files_under(data_dir)) == 4


def test_every_mirror_failing_names_url_and_path(tmp_path: Path, monkeypatch) -> None:
    _file_mirrors(monkeypatch, "cifar10", [tmp_path / "nowhere"])
    with pytest.raises(DatasetUnavailableError, match="downloading it failed") as caught:
        fetch_raw("cifar10", tmp_path / "data", offline=False)
    message = str(caught.value)
    assert (tmp_path / "nowhere" / "cifar-10-python.tar.gz").as_uri() in message
    assert str((tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz").resolve()) in message
    assert files_under(tmp_path / "data") == []


def test_raw_file_layout() -> None:
    assert raw_files("iris") == [] and raw_files("wine") == []
    assert raw_files("spambase") == ["spambase/spambase.data"]
    assert raw_files("cifar10") == ["cifar10/cifar-10-python.tar.gz"]
    assert sorted(raw_files("mnist")) == sorted(f"mnist/{p}" for p in (
        "MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz", *MNIST_TRAIN_FILES))
    with pytest.raises(KeyError, match="known datasets"):
        raw_files("imagenet")


# --- preparation -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, n, d, counts", [("iris", 150, 4, [50, 50, 50]), ("wine", 178, 13, [59, 71, 48])])
def test_uci_split_is_70_20_10_standardized_and_seeded(tmp_path: Path, name: str, n: int, d: int, counts) -> None:
    data = load_prepared(_prepare(tmp_path, name, seed=3))
    sizes = [len(data[f"y_{p}"]) for p in ("train", "test", "val")]
    assert sum(sizes) == n and sizes[0] == round(0.7 * n) and sizes[1] == round(0.2 * n)
    everything = torch.cat([data["x_train"], data["x_test"], data["x_val"]]).double()
    labels = torch.cat([data["y_train"], data["y_test"], data["y_val"]])
    assert everything.shape[1] == d and labels.bincount().tolist() == counts and len(data["classes"]) == 3
    # standardized on the whole dataset, before the split (the thesis's order)
    np.testing.assert_allclose(everything.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(everything.std(0, unbiased=False), 1, atol=1e-5)
    assert data["meta"]["scaling"]["standardized_before_split"] is True
    # the raw data is recovered from the recorded mean and std
    from sklearn import datasets
    raw = getattr(datasets, f"load_{name}")().data
    scaling = data["meta"]["scaling"]
    restored = everything.numpy() * np.array(scaling["std"]) + np.array(scaling["mean"])
    np.testing.assert_allclose(np.sort(restored, axis=0), np.sort(raw, axis=0), rtol=1e-5, atol=1e-4)
    # deterministic given the seed, different for another seed
    again = load_prepared(_prepare(tmp_path / "again", name, seed=3))
    other = load_prepared(_prepare(tmp_path / "other", name, seed=4))
    for key in ("x_train", "y_train", "x_test", "x_val"):
        assert torch.equal(data[key], again[key])
    assert not torch.equal(data["x_train"], other["x_train"])
    assert data["meta"]["seed"] == 3 and data["meta"]["synthetic"] is False


def test_standardize_on_the_training_split_only(tmp_path: Path) -> None:
    data = load_prepared(_prepare(tmp_path, "wine", seed=1, standardize="train"))
    np.testing.assert_allclose(data["x_train"].double().mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(data["x_train"].double().std(0, unbiased=False), 1, atol=1e-5)
    assert abs(data["x_test"].double().mean(0)).max() > 1e-3  # test statistics were not used
    assert data["meta"]["scaling"]["fit_on"] == "train"


@pytest.mark.parametrize("split", [{"train": 0.7, "test": 0.2, "val": 0.2}, {"train": 0.0, "test": 0.9, "val": 0.1}])
def test_bad_split_fractions_are_rejected(tmp_path: Path, split) -> None:
    with pytest.raises(ValueError, match="split"):
        prepare_dataset("iris", tmp_path, tmp_path / "iris.pt", seed=0, split=split)
    assert not (tmp_path / "iris.pt").exists()


def test_image_validation_hold_out_is_seeded_and_disjoint(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes={"mnist_train": 100, "mnist_test": 20})
    a, b, c = (load_prepared(_prepare(tmp_path, "mnist", synthetic=True, seed=seed, image_val_fraction=0.25))
               for seed in (7, 7, 8))
    assert len(a["y_train"]) == 75 and len(a["y_val"]) == 25 and len(a["y_test"]) == 20
    assert torch.equal(a["x_val"], b["x_val"]) and not torch.equal(a["x_val"], c["x_val"])
    rows = {tuple(x.flatten().tolist()) for x in a["x_train"]}
    assert not any(tuple(x.flatten().tolist()) in rows for x in a["x_val"])
    assert a["meta"]["split"] == {"val_fraction_of_train": 0.25}


def test_a_failing_save_leaves_no_output(tmp_path: Path, monkeypatch) -> None:
    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    out = tmp_path / "out" / "iris.pt"
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset("iris", tmp_path, out, seed=0)
    assert files_under(tmp_path / "out") == []


def test_load_prepared_rejects_other_files(tmp_path: Path) -> None:
    torch.save({"x_train": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(DataError, match="not a prepared dataset"):
        load_prepared(tmp_path / "model.pt")


# --- synthetic stand-ins -----------------------------------------------------------------------

@pytest.mark.parametrize("name, shape", [("mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))])
def test_synthetic_images_round_trip_through_the_real_loaders(tmp_path: Path, name: str, shape) -> None:
    sizes = {f"{name}_train": 50, f"{name}_test": 20}
    write_synthetic(name, tmp_path, seed=1, sizes=sizes)
    data = load_prepared(_prepare(tmp_path, name, synthetic=True))
    assert data["x_train"].shape == (50, *shape) and data["x_test"].shape == (20, *shape)
    assert data["x_val"].shape == (0, *shape)
    assert data["x_train"].dtype == torch.float32 and 0 <= data["x_train"].min() and data["x_train"].max() <= 255
    assert data["y_train"].dtype == torch.int64 and set(data["y_train"].tolist()) == set(range(10))
    assert data["meta"]["synthetic"] is True and len(data["classes"]) == 10
    assert all(info["origin"] == "synthetic" for info in data["meta"]["raw_files"].values())


def test_synthetic_cifar_is_the_official_pickle_layout(tmp_path: Path) -> None:
    import pickle

    (archive,) = write_synthetic("cifar10", tmp_path, seed=0, sizes=SMALL)
    with tarfile.open(archive, "r:gz") as tar:
        names = set(tar.getnames())
        assert {f"cifar-10-batches-py/{f}" for f in ("data_batch_1", "data_batch_5", "test_batch",
                                                     "batches.meta")} <= names
        batch = pickle.loads(tar.extractfile("cifar-10-batches-py/data_batch_1").read(), encoding="latin1")
        meta = pickle.loads(tar.extractfile("cifar-10-batches-py/batches.meta").read(), encoding="latin1")
    assert batch["data"].dtype == np.uint8 and batch["data"].shape == (6, 3072) and len(batch["labels"]) == 6
    assert meta["label_names"][0] == "airplane" and len(meta["label_names"]) == 10


def test_synthetic_spambase_round_trips_with_crlf(tmp_path: Path) -> None:
    (path,) = write_synthetic("spambase", tmp_path, seed=0, sizes={"spambase_rows": 80})
    assert path.read_bytes().count(b"\r\n") == 80
    data = load_prepared(_prepare(tmp_path, "spambase", synthetic=True))
    assert sum(len(data[f"y_{p}"]) for p in ("train", "test", "val")) == 80
    assert data["x_train"].shape[1] == 57 and data["meta"]["synthetic"] is True


def test_synthetic_writer_is_deterministic_and_does_not_rewrite(tmp_path: Path) -> None:
    a = write_synthetic("cifar10", tmp_path / "a", seed=5, sizes=SMALL)
    b = write_synthetic("cifar10", tmp_path / "b", seed=5, sizes=SMALL)
    c = write_synthetic("cifar10", tmp_path / "c", seed=6, sizes=SMALL)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b] != [p.read_bytes() for p in c]
    os.utime(a[0], (1_000_000, 1_000_000))
    write_synthetic("cifar10", tmp_path / "a", seed=5, sizes=SMALL)
    assert a[0].stat().st_mtime == 1_000_000  # same bytes: left alone, so Snakemake sees no change
    write_synthetic("cifar10", tmp_path / "a", seed=6, sizes=SMALL)  # its own files may be replaced
    assert a[0].read_bytes() == c[0].read_bytes()


def test_synthetic_writer_never_overwrites_real_data(shared_data_dir: Path, tmp_path: Path) -> None:
    path = stage_spambase(shared_data_dir, tmp_path)
    before = path.read_bytes()
    with pytest.raises(DataError, match="refusing"):
        write_synthetic("spambase", tmp_path, seed=0)
    assert path.read_bytes() == before and not (tmp_path / "spambase" / SYNTHETIC_MANIFEST).exists()


def test_synthetic_mnist_is_valid_idx(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes={"mnist_train": 30, "mnist_test": 12})
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    assert read_idx_header(raw / "train-images-idx3-ubyte.gz") == (2051, (30, 28, 28))
    assert read_idx_header(raw / "t10k-labels-idx1-ubyte.gz") == (2049, (12,))
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz") as handle:
        assert len(handle.read()) == 8 + 12
    assert check_partial_mnist(tmp_path / "mnist") == 30  # well formed by the partial-file rules too


def test_partial_mnist_rules_reject_inconsistent_files(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes={"mnist_train": 30, "mnist_test": 12})
    images = tmp_path / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    with gzip.open(images) as handle:
        payload = handle.read()
    with gzip.open(images, "wb") as handle:  # a complete gzip stream whose header overstates the payload
        handle.write(payload[:-784])
    with pytest.raises(ValueError, match="truncated"):
        check_partial_mnist(tmp_path / "mnist")
    images.write_bytes(images.read_bytes()[:-20])  # a cut gzip stream
    with pytest.raises(ValueError, match="not complete"):
        check_partial_mnist(tmp_path / "mnist")


@pytest.mark.parametrize("name, chance", [("mnist", 0.1), ("cifar10", 0.1), ("spambase", 0.61)])
def test_synthetic_data_is_learnable(tmp_path: Path, name: str, chance: float) -> None:
    """Even a nearest-class-mean classifier beats chance (or the majority class) by far."""
    write_synthetic(name, tmp_path, seed=2017)  # the smoke sizes
    data = load_prepared(_prepare(tmp_path, name, synthetic=True))
    x_train, x_test = data["x_train"].flatten(1).double(), data["x_test"].flatten(1).double()
    means = torch.stack([x_train[data["y_train"] == c].mean(0) for c in range(len(data["classes"]))])
    accuracy = (torch.cdist(x_test, means).argmin(1) == data["y_test"]).double().mean().item()
    assert accuracy > chance + 0.25, accuracy
    assert accuracy < 1.0 or name != "spambase"  # noisy enough not to be trivial


def test_command_line_reports_missing_files(tmp_path: Path, capsys) -> None:
    assert cli_main(["fetch", "spambase", "--data-dir", str(tmp_path), "--offline"]) == 2
    assert SPAMBASE_URL in capsys.readouterr().err
    assert cli_main(["synthetic", "spambase", "--data-dir", str(tmp_path)]) == 0
    out = tmp_path / "sb.pt"
    assert cli_main(["prepare", "spambase", "--data-dir", str(tmp_path), "--synthetic", "--offline",
                     "--out", str(out)]) == 0
    assert load_prepared(out)["meta"]["dataset"] == "spambase"


def test_image_sources_are_torchvisions_own() -> None:
    """specs.py copies torchvision's URLs and md5 sums (so that parsing the workflow does not import
    torchvision); they must stay equal to the pinned torchvision's."""
    from torchvision.datasets import CIFAR10, MNIST

    from advbounds.data import specs

    assert specs.MNIST_MIRRORS == tuple(MNIST.mirrors)
    assert specs.MNIST_RESOURCES == tuple(tuple(entry) for entry in MNIST.resources)
    assert (specs.CIFAR10_URL, specs.CIFAR10_FILENAME, specs.CIFAR10_TGZ_MD5, specs.CIFAR10_BASE_FOLDER) == (
        CIFAR10.url, CIFAR10.filename, CIFAR10.tgz_md5, CIFAR10.base_folder)
    members = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    assert specs.CIFAR10_MEMBERS == tuple(tuple(entry) for entry in members)


def test_reading_the_dataset_table_imports_neither_torch_nor_torchvision() -> None:
    """Snakemake reads raw_files() at parse time; torch/torchvision would cost seconds per call."""
    code = ("import sys; from advbounds.data import raw_files; raw_files('mnist'); "
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- MNIST verified by its decompressed content; torchvision's extracted files -------------------
# A re-compressed .gz whose own md5 is not torchvision's passes by the md5 of its decompressed
# content (specs.MNIST_CONTENT_MD5); so does torchvision's extracted file (MNIST/raw/*-ubyte),
# which stands in for an absent .gz.

MNIST_RAW = "MNIST/raw"
MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")
FULL_TRAIN_IMAGES_GZ_MD5 = "c7dfcf1bfd3481a40f7b3aedbdbd083c"  # shared/data README: gzip -9n of the official content
MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def gunzip(path: Path) -> bytes:
    with gzip.open(path, "rb") as handle:
        return handle.read()


def write_gz(payload: bytes, path: Path, level: int = 9) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) as out:
        out.write(payload)
    return path


def content_md5s() -> dict[str, str]:
    return {raw.relpath: raw.content_md5 for raw in get_spec("mnist").raw_files}


def stage_full_mnist(shared: Path, data_dir: Path, extracted: bool = False) -> Path:
    """The official test files and the full (re-compressed) training set; ``extracted``: all four
    as torchvision's extracted files, with no .gz."""
    raw = data_dir / "mnist" / MNIST_RAW
    raw.mkdir(parents=True)
    sources = {"t10k-images-idx3-ubyte.gz": shared / "mnist", "t10k-labels-idx1-ubyte.gz": shared / "mnist",
               "train-images-idx3-ubyte.gz": shared / "mnist-train-full",
               "train-labels-idx1-ubyte.gz": shared / "mnist-train-full"}
    for name, folder in sources.items():
        if extracted:
            (raw / name.removesuffix(".gz")).write_bytes(gunzip(folder / name))
        else:
            shutil.copy(folder / name, raw / name)
    return raw


@pytest.fixture(scope="module")
def full_mnist(shared_data_dir: Path, tmp_path_factory) -> dict:
    """The full real MNIST set, prepared once from the re-compressed training images."""
    data_dir = tmp_path_factory.mktemp("full-mnist")
    stage_full_mnist(shared_data_dir, data_dir)
    out = data_dir / "out" / "mnist.pt"
    prepare_dataset("mnist", data_dir, out, seed=0, offline=True)
    return load_prepared(out)


def test_the_content_md5s_in_the_table_are_those_of_the_real_files(shared_data_dir: Path) -> None:
    from advbounds.data.checksums import md5_of_gunzipped

    wanted = content_md5s()
    folders = {"train-images-idx3-ubyte.gz": "mnist-train-full", "train-labels-idx1-ubyte.gz": "mnist",
               "t10k-images-idx3-ubyte.gz": "mnist", "t10k-labels-idx1-ubyte.gz": "mnist"}
    for name, folder in folders.items():
        assert md5_of_gunzipped(shared_data_dir / folder / name) == wanted[f"{MNIST_RAW}/{name}"], name
    # the re-compressed images are not torchvision's .gz, byte for byte
    images = shared_data_dir / "mnist-train-full" / "train-images-idx3-ubyte.gz"
    assert md5_of(images) == FULL_TRAIN_IMAGES_GZ_MD5 != get_spec("mnist").raw_files[0].md5


def test_the_recompressed_full_training_set_is_accepted_and_complete(full_mnist: dict, shared_data_dir: Path) -> None:
    meta = full_mnist["meta"]
    assert meta["partial"] is False  # no allow_partial needed, and not marked partial
    images = meta["raw_files"][f"{MNIST_RAW}/train-images-idx3-ubyte.gz"]
    assert images == {"md5": FULL_TRAIN_IMAGES_GZ_MD5, "content_md5": "6bbc9ace898e44ae57da46a324031adb",
                      "origin": "official", "verified_by": "content_md5",
                      "file": f"{MNIST_RAW}/train-images-idx3-ubyte.gz"}
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert meta["raw_files"][f"{MNIST_RAW}/{name}"]["verified_by"] == "gz_md5"  # unchanged official files
    assert full_mnist["x_train"].shape == (60000, 1, 28, 28) and full_mnist["x_test"].shape == (10000, 1, 28, 28)
    assert full_mnist["y_train"].bincount().tolist() == MNIST_TRAIN_CLASS_COUNTS
    # its first 14,262 images are the shortened copy's
    first = gunzip(shared_data_dir / "mnist-train-first14262" / "train-images-idx3-ubyte.gz")[16:]
    expected = torch.frombuffer(bytearray(first), dtype=torch.uint8).reshape(14262, 1, 28, 28)
    assert torch.equal(full_mnist["x_train"][:14262], expected.to(torch.float32))


def test_one_changed_byte_inside_the_full_training_set_is_rejected(shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_full_mnist(shared_data_dir, tmp_path)
    images = raw / "train-images-idx3-ubyte.gz"
    payload = bytearray(gunzip(images))
    payload[16 + 784 * 30000 + 400] ^= 0x01  # one pixel of image 30,000; header and length unchanged
    write_gz(bytes(payload), images, level=1)  # level 1: fast; any compression level will do
    changed = md5_of_bytes(bytes(payload))
    out = tmp_path / "out" / "mnist.pt"
    with pytest.raises(ChecksumError, match="decompressed content") as caught:
        prepare_dataset("mnist", tmp_path, out, seed=0, offline=True)
    error = caught.value
    assert error.path == images and error.expected == get_spec("mnist").raw_files[0].md5
    assert (error.expected_content, error.actual_content) == ("6bbc9ace898e44ae57da46a324031adb", changed)
    assert "6bbc9ace898e44ae57da46a324031adb" in str(error) and changed in str(error) and str(images) in str(error)
    # allow_partial is for shortened files: a full-size file that matches neither checksum is still rejected
    with pytest.raises(ChecksumError, match="not a shortened one"):
        prepare_dataset("mnist", tmp_path, out, seed=0, offline=True, allow_partial=True)
    assert files_under(tmp_path / "out") == []


def test_torchvisions_extracted_files_are_accepted(full_mnist: dict, shared_data_dir: Path, tmp_path: Path) -> None:
    raw = stage_full_mnist(shared_data_dir, tmp_path, extracted=True)
    assert not list(raw.glob("*.gz"))
    assert raw_files("mnist", tmp_path) == [f"mnist/{MNIST_RAW}/{n.removesuffix('.gz')}" for n in MNIST_NAMES]
    assert raw_files("mnist", tmp_path, missing_only=True) == []
    meta = prepare_dataset("mnist", tmp_path, tmp_path / "out" / "mnist.pt", seed=0, offline=True)
    assert meta["partial"] is False
    wanted = content_md5s()
    for name in MNIST_NAMES:
        record = meta["raw_files"][f"{MNIST_RAW}/{name}"]
        assert record == {"md5": wanted[f"{MNIST_RAW}/{name}"], "content_md5": wanted[f"{MNIST_RAW}/{name}"],
                          "origin": "official", "verified_by": "content_md5",
                          "file": f"{MNIST_RAW}/{name.removesuffix('.gz')}"}
    data = load_prepared(tmp_path / "out" / "mnist.pt")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(data[key], full_mnist[key]), key
    assert sorted(p.name for p in files_under(tmp_path / "mnist")) == sorted(n.removesuffix(".gz") for n in MNIST_NAMES)


# The same logic on small synthetic files (always run): the spec's md5s are monkeypatched to theirs.

def synthetic_as_official(monkeypatch, tmp_path: Path, train_md5s: bool = True) -> Path:
    """Write synthetic MNIST under tmp_path/src and make the spec vouch for it as if it were official:
    its .gz md5s and content md5s (``train_md5s=False``: the training files keep the official md5s,
    so that they fail both checks). Returns the source raw folder."""
    write_synthetic("mnist", tmp_path / "src", seed=0, sizes=SMALL)
    src = tmp_path / "src" / "mnist" / MNIST_RAW
    spec = get_spec("mnist")
    files = []
    for raw in spec.raw_files:
        if train_md5s or raw.relpath not in MNIST_TRAIN_FILES:
            path = src / Path(raw.relpath).name
            raw = dataclasses.replace(raw, md5=md5_of(path), content_md5=md5_of_bytes(gunzip(path)))
        files.append(raw)
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(
        spec, raw_files=tuple(files), expected={"train": SMALL["mnist_train"], "test": SMALL["mnist_test"]}))
    return src


def mnist_raw_folder(monkeypatch, tmp_path: Path, copy_gz: bool = True) -> tuple[Path, Path]:
    """``synthetic_as_official``, and the raw folder that a fetch into ``tmp_path/data`` fills: returns the
    source folder and ``data/mnist/<MNIST_RAW>``, created, with a copy of every source .gz (``copy_gz``)
    or empty."""
    src = synthetic_as_official(monkeypatch, tmp_path)
    raw = tmp_path / "data" / "mnist" / MNIST_RAW
    raw.mkdir(parents=True)
    if copy_gz:
        for name in MNIST_NAMES:
            shutil.copy(src / name, raw / name)
    return src, raw

def test_streamed_content_md5_equals_the_md5_of_the_decompressed_bytes(tmp_path: Path) -> None:
    from advbounds.data.checksums import md5_of_gunzipped

    payload = bytes(range(256)) * 1000
    path = write_gz(payload, tmp_path / "x.gz")
    with open(path, "ab") as handle:  # a second gzip member: gzip readers concatenate them
        handle.write(gzip.compress(b"tail", mtime=0))
    assert md5_of_gunzipped(path, chunk=1000) == md5_of_gunzipped(path) == md5_of_bytes(payload + b"tail")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises((OSError, EOFError)):
        md5_of_gunzipped(path)


def test_a_recompressed_gz_is_accepted_by_its_content(tmp_path: Path, monkeypatch) -> None:
    src, raw = mnist_raw_folder(monkeypatch, tmp_path)
    data_dir = tmp_path / "data"
    reference = load_prepared(_prepare(data_dir, "mnist"))
    assert {r["verified_by"] for r in reference["meta"]["raw_files"].values()} == {"gz_md5"}
    write_gz(gunzip(src / "train-images-idx3-ubyte.gz"), raw / "train-images-idx3-ubyte.gz", level=1)
    assert md5_of(raw / "train-images-idx3-ubyte.gz") != md5_of(src / "train-images-idx3-ubyte.gz")
    data = load_prepared(_prepare(data_dir, "mnist"))
    record = data["meta"]["raw_files"][f"{MNIST_RAW}/train-images-idx3-ubyte.gz"]
    assert record["verified_by"] == "content_md5" and record["origin"] == "official"
    assert record["content_md5"] == get_spec("mnist").raw_files[0].content_md5
    assert record["md5"] == md5_of(raw / "train-images-idx3-ubyte.gz")
    assert data["meta"]["partial"] is False
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(data[key], reference[key])


def test_extracted_files_stand_in_for_absent_gz(tmp_path: Path, monkeypatch) -> None:
    src, raw = mnist_raw_folder(monkeypatch, tmp_path, copy_gz=False)
    data_dir = tmp_path / "data"
    # train images and test labels extracted, the other two as .gz
    for name in MNIST_NAMES:
        if name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
            (raw / name.removesuffix(".gz")).write_bytes(gunzip(src / name))
        else:
            shutil.copy(src / name, raw / name)
    assert raw_files("mnist", data_dir) == [
        f"mnist/{MNIST_RAW}/train-images-idx3-ubyte", f"mnist/{MNIST_RAW}/train-labels-idx1-ubyte.gz",
        f"mnist/{MNIST_RAW}/t10k-images-idx3-ubyte.gz", f"mnist/{MNIST_RAW}/t10k-labels-idx1-ubyte"]
    assert raw_files("mnist") == [f"mnist/{MNIST_RAW}/{name}" for name in MNIST_NAMES]  # the canonical names
    verified = fetch_raw("mnist", data_dir, offline=True)
    assert list(verified) == [f"{MNIST_RAW}/{name}" for name in MNIST_NAMES]  # keyed by the canonical names
    images = verified[f"{MNIST_RAW}/train-images-idx3-ubyte.gz"]
    assert images["verified_by"] == "content_md5" and images["file"] == f"{MNIST_RAW}/train-images-idx3-ubyte"
    assert images["md5"] == images["content_md5"] == get_spec("mnist").raw_files[0].content_md5
    assert verified[f"{MNIST_RAW}/train-labels-idx1-ubyte.gz"]["verified_by"] == "gz_md5"
    data = load_prepared(_prepare(data_dir, "mnist"))
    write_synthetic("mnist", tmp_path / "ref", seed=0, sizes=SMALL)
    reference = load_prepared(_prepare(tmp_path / "ref", "mnist", synthetic=True))
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(data[key], reference[key])
    assert data["meta"]["partial"] is False and data["meta"]["raw_files"] == verified
    assert sorted(p.name for p in files_under(data_dir / "mnist")) == sorted(p.name for p in raw.iterdir())


def test_a_changed_byte_fails_both_checksums(tmp_path: Path, monkeypatch) -> None:
    src, raw = mnist_raw_folder(monkeypatch, tmp_path)
    spec = {r.relpath: r for r in get_spec("mnist").raw_files}
    payload = bytearray(gunzip(src / "t10k-images-idx3-ubyte.gz"))
    payload[16 + 784 * 3 + 100] ^= 0x01
    write_gz(bytes(payload), raw / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(ChecksumError, match="decompressed content") as caught:
        fetch_raw("mnist", tmp_path / "data", offline=True)
    assert caught.value.expected_content == spec[f"{MNIST_RAW}/t10k-images-idx3-ubyte.gz"].content_md5
    assert caught.value.actual_content == md5_of_bytes(bytes(payload))
    # the extracted form: its own md5 must be the content md5
    (raw / "t10k-images-idx3-ubyte.gz").unlink()
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes(payload))
    with pytest.raises(ChecksumError, match="extracted form") as caught:
        fetch_raw("mnist", tmp_path / "data", offline=True)
    assert caught.value.path == raw / "t10k-images-idx3-ubyte"
    assert caught.value.expected == spec[f"{MNIST_RAW}/t10k-images-idx3-ubyte.gz"].content_md5
    # a cut .gz: the content check says why there is no content md5
    shutil.copy(src / "t10k-images-idx3-ubyte.gz", raw / "t10k-images-idx3-ubyte.gz")
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes((src / "t10k-images-idx3-ubyte.gz").read_bytes()[:-40])
    with pytest.raises(ChecksumError, match="does not decompress") as caught:
        fetch_raw("mnist", tmp_path / "data", offline=True)
    assert caught.value.path == raw / "t10k-images-idx3-ubyte.gz"  # the .gz, present, takes precedence


def test_a_present_gz_is_never_replaced_by_its_extracted_neighbour(tmp_path: Path, monkeypatch) -> None:
    src, raw = mnist_raw_folder(monkeypatch, tmp_path)
    for name in MNIST_NAMES:
        (raw / name.removesuffix(".gz")).write_bytes(gunzip(src / name))  # a good extracted copy beside it
    assert raw_files("mnist", tmp_path / "data") == [f"mnist/{MNIST_RAW}/{name}" for name in MNIST_NAMES]
    assert all(r["verified_by"] == "gz_md5" and r["file"].endswith(".gz")
               for r in fetch_raw("mnist", tmp_path / "data", offline=True).values())
    flip_byte(raw / "t10k-labels-idx1-ubyte.gz", 30)
    with pytest.raises(ChecksumError) as caught:
        fetch_raw("mnist", tmp_path / "data", offline=True)
    assert caught.value.path == raw / "t10k-labels-idx1-ubyte.gz"


def test_missing_files_and_what_a_fetch_must_download(tmp_path: Path, monkeypatch) -> None:
    src = synthetic_as_official(monkeypatch, tmp_path)
    data_dir = tmp_path / "data"
    canonical = [f"mnist/{MNIST_RAW}/{name}" for name in MNIST_NAMES]
    assert raw_files("mnist", data_dir) == canonical == raw_files("mnist", data_dir, missing_only=True)
    raw = data_dir / "mnist" / MNIST_RAW
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte").write_bytes(gunzip(src / "train-labels-idx1-ubyte.gz"))
    shutil.copy(src / "t10k-images-idx3-ubyte.gz", raw)
    assert raw_files("mnist", data_dir, missing_only=True) == [canonical[0], canonical[3]]
    with pytest.raises(DatasetUnavailableError, match="extracted file") as caught:
        fetch_raw("mnist", data_dir, offline=True)
    assert {path.name for _, path in caught.value.missing} == {"train-images-idx3-ubyte.gz",
                                                                 "t10k-labels-idx1-ubyte.gz"}
    with pytest.raises(ValueError, match="needs data_dir"):
        raw_files("mnist", missing_only=True)
    assert raw_files("spambase", data_dir) == ["spambase/spambase.data"] and raw_files("iris", data_dir) == []


def test_a_shortened_extracted_training_set_is_partial_only_when_allowed(tmp_path: Path, monkeypatch) -> None:
    src = synthetic_as_official(monkeypatch, tmp_path, train_md5s=False)  # 40 training samples: not official
    raw = tmp_path / "data" / "mnist" / MNIST_RAW
    raw.mkdir(parents=True)
    for name in MNIST_NAMES:
        if name.startswith("train"):
            (raw / name.removesuffix(".gz")).write_bytes(gunzip(src / name))
        else:
            shutil.copy(src / name, raw / name)
    with pytest.raises(ChecksumError, match="allow_partial_mnist_train"):
        fetch_raw("mnist", tmp_path / "data", offline=True)
    assert check_partial_mnist(tmp_path / "data" / "mnist") == SMALL["mnist_train"]
    meta = prepare_dataset("mnist", tmp_path / "data", tmp_path / "out.pt", seed=0, offline=True, allow_partial=True)
    images = meta["raw_files"][f"{MNIST_RAW}/train-images-idx3-ubyte.gz"]
    assert images["origin"] == "partial" and images["verified_by"] == "idx_structure"
    assert images["file"] == f"{MNIST_RAW}/train-images-idx3-ubyte" and images["samples"] == SMALL["mnist_train"]
    assert meta["partial"] is True and meta["sizes"]["train"] == SMALL["mnist_train"]


def test_synthetic_runs_accept_only_their_own_gz(tmp_path: Path) -> None:
    write_synthetic("mnist", tmp_path, seed=0, sizes=SMALL)
    raw = tmp_path / "mnist" / MNIST_RAW
    assert all(r["verified_by"] == "synthetic_manifest"
               for r in fetch_raw("mnist", tmp_path, offline=True, synthetic=True).values())
    (raw / "t10k-labels-idx1-ubyte").write_bytes(gunzip(raw / "t10k-labels-idx1-ubyte.gz"))
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ChecksumError, match="write_synthetic"):
        fetch_raw("mnist", tmp_path, offline=True, synthetic=True)


def test_command_line_fetch_reports_the_checksum_that_matched(tmp_path: Path, monkeypatch, capsys) -> None:
    src, raw = mnist_raw_folder(monkeypatch, tmp_path, copy_gz=False)
    for name in MNIST_NAMES:
        (raw / name.removesuffix(".gz")).write_bytes(gunzip(src / name))
    assert cli_main(["fetch", "mnist", "--data-dir", str(tmp_path / "data"), "--offline"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {record["verified_by"] for record in printed.values()} == {"content_md5"}
    assert cli_main(["prepare", "mnist", "--data-dir", str(tmp_path / "data"), "--offline",
                     "--out", str(tmp_path / "mnist.pt")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["train"] == SMALL["mnist_train"]


def test_command_line_help(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m advbounds.data")
    assert "fetch|prepare|synthetic NAME --data-dir DIR" in text
    for option in ("--offline", "--synthetic", "--allow-partial", "--data-dir", "--out", "--split"):
        assert option in text

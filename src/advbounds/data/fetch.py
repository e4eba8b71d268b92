"""Getting raw files into ``<data_dir>/<dataset>/`` and proving they are the right ones.

A raw file already in place (downloaded earlier, or pre-staged by hand for an offline run) is
verified and used without any network access. A missing file is downloaded when the run is online,
into a temporary folder, verified, and only then moved into place; offline it fails at once with
the URL and the exact path where the file should go. A file that fails its checksum is never used.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

from advbounds.data.checksums import md5_of, read_manifest
from advbounds.data.errors import ChecksumError, DataError, DatasetUnavailableError
from advbounds.data.specs import MNIST_TRAIN_FILES, RawFile, get_spec

log = logging.getLogger(__name__)

_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049


def fetch_raw(name: str, data_dir: str | os.PathLike, offline: bool, *, synthetic: bool = False,
              allow_partial: bool = False) -> dict[str, dict]:
    """Make sure every raw file of ``name`` is present and verified; return what was verified.

    ``synthetic`` accepts the stand-in files listed in the dataset folder's synthetic manifest
    (smoke runs only); ``allow_partial`` accepts a shortened but well-formed MNIST training set.
    """
    spec = get_spec(name)
    dataset_dir = Path(data_dir) / name
    verified: dict[str, dict] = {}
    for raw in spec.raw_files:
        path = dataset_dir / raw.relpath
        if not path.exists():
            if offline or synthetic:
                reason = "the run is offline" if offline else "synthetic runs never download"
                raise DatasetUnavailableError(name, raw.urls[0], path, reason)
            _download(name, raw, path)
        verified[raw.relpath] = verify_raw_file(name, raw, dataset_dir, synthetic=synthetic,
                                                allow_partial=allow_partial)
    return verified


def verify_raw_file(name: str, raw: RawFile, dataset_dir: Path, *, synthetic: bool = False,
                    allow_partial: bool = False) -> dict:
    """Check one raw file against its checksum; raise :class:`ChecksumError` when it fails."""
    path = Path(dataset_dir) / raw.relpath
    expected = raw.md5
    origin = "official"
    if synthetic:
        manifest = read_manifest(dataset_dir)
        if raw.relpath not in manifest:
            raise ChecksumError(path, "(listed in the synthetic manifest)", "not listed",
                                "Synthetic runs accept only files written by the synthetic writer.")
        expected, origin = manifest[raw.relpath], "synthetic"
    actual = md5_of(path, normalize_newlines=raw.normalize_newlines)
    if actual == expected:
        return {"md5": actual, "origin": origin}
    if allow_partial and not synthetic and raw.relpath in MNIST_TRAIN_FILES:
        count = _check_partial_mnist(dataset_dir)
        log.warning("%s: %s does not match the official md5 but is a well-formed MNIST file with %d "
                    "samples; using it because allow_partial_mnist_train is true. Results are NOT "
                    "those of the full training set.", name, raw.relpath, count)
        return {"md5": actual, "origin": "partial", "official_md5": expected, "samples": count}
    hint = ""
    if raw.relpath in MNIST_TRAIN_FILES:
        hint = "A deliberately shortened MNIST training set needs datasets.allow_partial_mnist_train: true."
    raise ChecksumError(path, expected, actual, hint)


def _download(name: str, raw: RawFile, path: Path) -> None:
    """Download into a temporary folder, verify, then move into place: never a half file."""
    from torchvision.datasets.utils import download_url

    path.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in raw.urls:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
            try:
                log.info("downloading %s", url)
                download_url(url, root=tmp, filename=path.name, md5=None)
            except Exception as exc:  # noqa: BLE001 - try the next mirror, report all at the end
                errors.append(f"{url}: {exc}")
                continue
            tmp_file = Path(tmp) / path.name
            actual = md5_of(tmp_file, normalize_newlines=raw.normalize_newlines)
            if actual != raw.md5:
                errors.append(f"{url}: downloaded file has md5 {actual}, expected {raw.md5}")
                continue
            os.replace(tmp_file, path)
            return
    raise DatasetUnavailableError(name, raw.urls[0], path,
                                  "the download failed:\n    " + "\n    ".join(errors))


def read_idx_header(path: Path) -> tuple[int, tuple[int, ...]]:
    """Magic number and dimensions of a gzipped IDX file."""
    with gzip.open(path, "rb") as handle:
        magic, = struct.unpack(">i", handle.read(4))
        ndim = magic & 0xFF
        dims = struct.unpack(f">{ndim}i", handle.read(4 * ndim))
    return magic, dims


def _check_partial_mnist(dataset_dir: Path) -> int:
    """A shortened MNIST training set must still be two well-formed IDX files of equal length."""
    images, labels = (Path(dataset_dir) / rel for rel in MNIST_TRAIN_FILES)
    if not (images.exists() and labels.exists()):
        raise DataError("a partial MNIST training set needs both the image and the label file")
    try:
        img_magic, img_dims = read_idx_header(images)
        lab_magic, lab_dims = read_idx_header(labels)
        sizes = [_gunzipped_size(images), _gunzipped_size(labels)]
    except (OSError, EOFError, struct.error) as exc:
        raise DataError(f"partial MNIST training files are not valid gzipped IDX files: {exc}") from exc
    if img_magic != _IDX_IMAGES_MAGIC or lab_magic != _IDX_LABELS_MAGIC or img_dims[1:] != (28, 28):
        raise DataError(f"partial MNIST training files have wrong IDX headers: {img_dims}, {lab_dims}")
    count = img_dims[0]
    if lab_dims[0] != count or sizes != [16 + count * 784, 8 + count]:
        raise DataError(f"partial MNIST training files are inconsistent or truncated: header says {count} "
                        f"images and {lab_dims[0]} labels, payload sizes {sizes}")
    return count


def _gunzipped_size(path: Path) -> int:
    size = 0
    with gzip.open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            size += len(block)
    return size


def extract_gz(src: Path, dst: Path) -> None:
    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)

"""Getting raw files into ``<data_dir>/<dataset>/`` and proving they are the right ones.

* A raw file already in place (downloaded earlier, or pre-staged by hand for an offline run) is
  verified and used without any network access.
* An MNIST file passes if its own md5 is torchvision's (``verified_by: "gz_md5"``) or, failing
  that, if the md5 of its decompressed content (streamed, never loaded whole) is the official
  content's (``"content_md5"``): a faithful re-compressed copy. torchvision's extracted file
  (``MNIST/raw/*-ubyte``, no ``.gz``) stands in for a ``.gz`` that is absent and passes by the
  content md5 too; a ``.gz`` that is present always takes precedence and is never silently
  replaced by its extracted neighbour. Each record names the file that was used (``file``).
* A missing file is downloaded when the run is online, with torchvision's ``download_url`` (which
  checks the md5 itself), into a temporary folder next to its destination; it is verified again
  and only then renamed into place. An interrupted or failed download leaves nothing behind.
* Offline (or in a synthetic run) a missing file fails at once with
  :class:`DatasetUnavailableError`, which lists every missing file with its URLs and exact path.
* A file that fails its checksum raises :class:`ChecksumError` and is never used. We never delete
  or overwrite a file a user put there; the message says to delete it.
* ``allow_partial`` (config ``datasets.allow_partial_mnist_train``) is the one, opt-in, exception:
  *shortened* MNIST training files (fewer than 60,000 samples), which match neither checksum, are
  accepted if they are two well-formed IDX files (gzipped or extracted; images 28x28) whose headers
  agree with each other and with their payload sizes. A loud warning is logged and the prepared
  file's ``meta`` says ``partial: true``.
* The fetch step only ever writes the canonical ``.gz`` (a download); it never writes a ``.gz``
  from an extracted file. :func:`advbounds.data.raw_files` with ``data_dir`` names the file that
  is actually there, so the workflow's rules list what exists instead of a file nobody wrote.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import struct
import tempfile
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import IO

from advbounds.data.checksums import md5_of, md5_of_gunzipped, read_manifest
from advbounds.data.errors import ChecksumError, DatasetUnavailableError
from advbounds.data.specs import MNIST_TRAIN_FILES, RawFile, get_spec
from advbounds.io import atomic_path, atomic_write

log = logging.getLogger(__name__)

IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 2051, 2049  # 0x00000803 (uint8, 3 dims), 0x00000801 (uint8, 1 dim)
MNIST_TRAIN_SIZE = 60000


def fetch_raw(name: str, data_dir: str | os.PathLike, offline: bool, *, synthetic: bool = False,
              allow_partial: bool = False) -> dict[str, dict]:
    """Make sure every raw file of ``name`` is present and verified; return what was verified.

    Returns ``{relpath: {"md5": ..., "origin": "official" | "synthetic" | "partial", "verified_by":
    ..., "file": ..., ...}}`` keyed by the canonical relpath (empty for the bundled Iris and Wine);
    ``file`` is the file actually verified (the extracted MNIST file where it stands in for the
    ``.gz``), ``verified_by`` the check it passed (see :func:`verify_raw_file`). ``synthetic``
    verifies against the dataset folder's synthetic manifest instead of the official md5s and never
    downloads; ``allow_partial`` accepts a shortened but well-formed MNIST training set (see the
    module docstring).
    """
    spec = get_spec(name)
    dataset_dir = Path(data_dir) / name
    missing = [raw for raw in spec.raw_files if resolve_raw_file(raw, dataset_dir) is None]
    if missing and (offline or synthetic):
        if synthetic:
            reason = "this is a synthetic run (synthetic: true), which never downloads"
            advice = (f"Write the stand-ins first with advbounds.data.write_synthetic({name!r}, {str(data_dir)!r}, "
                      f"seed) or `python -m advbounds.data synthetic {name} --data-dir {data_dir}`.")
        else:
            reason = "the run is offline (config offline: true)"
            advice = "Or run online (config offline: false) to download and verify it automatically."
            if any(raw.extracted_relpath for raw in missing):
                advice += (" The extracted file (the same name without .gz, as torchvision extracts it) "
                           "is accepted in place of a .gz.")
        raise DatasetUnavailableError(name, [(raw.urls, dataset_dir / raw.relpath) for raw in missing],
                                      reason, advice)
    verified: dict[str, dict] = {}
    # Files already present are verified before anything is downloaded, so a corrupt pre-staged
    # file fails fast instead of after a long download.
    for raw in spec.raw_files:
        if raw not in missing:
            verified[raw.relpath] = verify_raw_file(name, raw, dataset_dir, synthetic=synthetic,
                                                    allow_partial=allow_partial)
    for raw in missing:
        _download(name, raw, dataset_dir / raw.relpath)
        verified[raw.relpath] = verify_raw_file(name, raw, dataset_dir, synthetic=synthetic,
                                                allow_partial=allow_partial)
    return {raw.relpath: verified[raw.relpath] for raw in spec.raw_files}


def resolve_raw_file(raw: RawFile, dataset_dir: Path) -> str | None:
    """The relpath standing for ``raw`` in ``dataset_dir``: its own if that file exists, else its
    extracted form if that may stand in and exists, else ``None`` (missing)."""
    if (Path(dataset_dir) / raw.relpath).is_file():
        return raw.relpath
    if raw.extracted_relpath and (Path(dataset_dir) / raw.extracted_relpath).is_file():
        return raw.extracted_relpath
    return None


def verify_raw_file(name: str, raw: RawFile, dataset_dir: Path, *, synthetic: bool = False,
                    allow_partial: bool = False) -> dict:
    """Check one raw file against its checksum; raise :class:`ChecksumError` when it fails.

    ``verified_by`` in the returned record: ``"md5"`` or, for a gzipped MNIST file, ``"gz_md5"`` (the
    file's own published md5); ``"content_md5"`` (the md5 of the decompressed content: a
    re-compressed ``.gz`` or the extracted file); ``"synthetic_manifest"``; ``"idx_structure"`` (a
    partial MNIST training file, accepted on request by its structure alone).
    """
    dataset_dir = Path(dataset_dir)
    relpath = resolve_raw_file(raw, dataset_dir) or raw.relpath
    path = dataset_dir / relpath
    extracted = relpath != raw.relpath
    if synthetic:
        manifest = read_manifest(dataset_dir)
        if extracted or raw.relpath not in manifest:
            raise ChecksumError(path, "(an md5 listed in the synthetic manifest)", "not listed",
                                "Synthetic runs accept only files written by advbounds.data.write_synthetic.")
        actual = md5_of(path, normalize_newlines=raw.normalize_newlines)
        if actual == manifest[raw.relpath]:
            return {"md5": actual, "origin": "synthetic", "verified_by": "synthetic_manifest", "file": relpath}
        raise ChecksumError(path, manifest[raw.relpath], actual)
    actual = md5_of(path, normalize_newlines=raw.normalize_newlines)
    if actual == raw.md5 and not extracted:
        return {"md5": actual, "origin": "official", "verified_by": "gz_md5" if raw.content_md5 else "md5",
                "file": relpath}
    content = None
    if raw.content_md5:
        content = actual if extracted else _content_md5_or_reason(path)
        if content == raw.content_md5:
            log.info("%s: %s verified by the md5 of its decompressed content (%s)%s", name, relpath, content,
                     " -- the extracted file stands in for the absent " + raw.relpath if extracted
                     else f"; the file itself (md5 {actual}) was re-compressed")
            return {"md5": actual, "content_md5": content, "origin": "official", "verified_by": "content_md5",
                    "file": relpath}
    if allow_partial and raw.relpath in MNIST_TRAIN_FILES:
        try:
            count = check_partial_mnist(dataset_dir)
        except ValueError as exc:
            raise ChecksumError(path, raw.content_md5 if extracted else raw.md5, actual,
                                f"allow_partial_mnist_train is true, but this is not a usable partial "
                                f"training set either: {exc}") from exc
        log.warning(
            "\n" + "!" * 78 + "\n"
            "%s: %s is NOT the official file (md5 %s, official %s). It is a well-formed MNIST file\n"
            "with %d training samples and is used ONLY because allow_partial_mnist_train is true.\n"
            "Results trained on it are not those of the full 60,000-image training set.\n" + "!" * 78,
            name, relpath, actual, raw.content_md5 if extracted else raw.md5, count)
        return {"md5": actual, "origin": "partial", "verified_by": "idx_structure", "official_md5": raw.md5,
                "official_content_md5": raw.content_md5, "samples": count, "file": relpath}
    hint = ""
    if raw.relpath in MNIST_TRAIN_FILES:
        hint = "A deliberately shortened MNIST training set needs datasets.allow_partial_mnist_train: true."
    if extracted:  # its own md5 must be the official content's; there is no second check
        hint = (f"It is the extracted form standing in for the absent {raw.relpath}, so its md5 must be "
                f"that of the official decompressed content. {hint}").rstrip()
        raise ChecksumError(path, raw.content_md5, actual, hint)
    if raw.content_md5:
        raise ChecksumError(path, raw.md5, actual, hint, expected_content=raw.content_md5, actual_content=content)
    raise ChecksumError(path, raw.md5, actual, hint)


def _content_md5_or_reason(path: Path) -> str:
    """md5 of a gzipped file's decompressed content, or why it could not be decompressed."""
    try:
        return md5_of_gunzipped(path)
    except (OSError, EOFError, zlib.error) as exc:
        return f"none: it does not decompress ({type(exc).__name__}: {exc})"


def _download(name: str, raw: RawFile, path: Path) -> None:
    """Try each mirror: download into a temporary folder, verify, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[str, Exception]] = []
    for url in raw.urls:
        try:
            with atomic_path(path) as target, \
                    tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.download-") as tmp:
                fetched = Path(tmp) / path.name
                log.info("%s: downloading %s", name, url)
                try:
                    # torchvision checks the md5 itself (not for Spambase, whose md5 is of normalized text)
                    retrieve(url, fetched, md5=None if raw.normalize_newlines else raw.md5)
                except RuntimeError:
                    if not fetched.is_file():  # torchvision's "corrupted" error leaves the file: verify below
                        raise
                actual = md5_of(fetched, normalize_newlines=raw.normalize_newlines)
                if actual != raw.md5:
                    raise ChecksumError(path, raw.md5, actual, advice=f"The download from {url} was "
                                        "discarded; nothing was saved.")
                os.replace(fetched, target)
            log.info("%s: %s verified (md5 %s) and saved to %s", name, raw.relpath, raw.md5, path)
            return
        except Exception as exc:  # noqa: BLE001 - try the next mirror, report all of them at the end
            log.warning("%s: %s failed: %s", name, url, exc)
            failures.append((url, exc))
    checksum_failures = [exc for _, exc in failures if isinstance(exc, ChecksumError)]
    if len(checksum_failures) == len(failures):
        raise checksum_failures[-1]
    details = "\n        ".join(f"{url}: {type(exc).__name__}: {exc}" for url, exc in failures)
    raise DatasetUnavailableError(name, [(raw.urls, path)], f"downloading it failed:\n        {details}\n",
                                  "Check the network, or download the file by hand and put it at the path above.")


def retrieve(url: str, dest: Path, md5: str | None = None) -> None:
    """Fetch ``url`` to ``dest``. ``file://`` URLs (a local mirror) are copied; anything else goes
    through ``torchvision.datasets.utils.download_url``, which also checks ``md5`` when given."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        shutil.copyfile(urllib.request.url2pathname(parsed.path), dest)
        return
    import torchvision.datasets.utils as tv_utils

    tv_utils.download_url(url, root=str(dest.parent), filename=dest.name, md5=md5)


def _open_idx(path: Path) -> IO[bytes]:
    """An IDX file for reading: decompressed on the fly when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if Path(path).suffix == ".gz" else open(path, "rb")


def read_idx_header(path: Path) -> tuple[int, tuple[int, ...]]:
    """Magic number and dimensions of an IDX file, gzipped (``.gz``) or extracted."""
    with _open_idx(path) as handle:
        magic, = struct.unpack(">i", handle.read(4))
        ndim = magic & 0xFF
        dims = struct.unpack(f">{ndim}i", handle.read(4 * ndim))
    return magic, dims


def check_partial_mnist(dataset_dir: Path) -> int:
    """Number of samples of a shortened MNIST training set; ``ValueError`` unless it is well formed.

    Well formed: both files are complete gzip streams (or extracted IDX files standing in for
    them), the IDX magic numbers are those of uint8 images (3 dims) and labels (1 dim), images are
    28x28, both headers give the same count ``0 < n < 60000`` (a full-size file is not shortened: it
    has to match the official checksums), and each payload is exactly as long as its header says.
    """
    by_relpath = {raw.relpath: raw for raw in get_spec("mnist").raw_files}
    found = [resolve_raw_file(by_relpath[rel], Path(dataset_dir)) for rel in MNIST_TRAIN_FILES]
    if None in found:
        raise ValueError("a partial MNIST training set needs both the image and the label file")
    images, labels = (Path(dataset_dir) / rel for rel in found)
    try:
        img_magic, img_dims = read_idx_header(images)
        lab_magic, lab_dims = read_idx_header(labels)
        sizes = [_payload_size(images), _payload_size(labels)]
    except (OSError, EOFError, struct.error, zlib.error) as exc:
        raise ValueError(f"not complete IDX files ({type(exc).__name__}: {exc})") from exc
    if img_magic != IDX_IMAGES_MAGIC or lab_magic != IDX_LABELS_MAGIC or tuple(img_dims[1:]) != (28, 28):
        raise ValueError(f"wrong IDX headers: magic {img_magic}/{lab_magic}, dims {img_dims}/{lab_dims}")
    count = img_dims[0]
    if not 0 < count <= MNIST_TRAIN_SIZE or lab_dims[0] != count:
        raise ValueError(f"headers say {count} images and {lab_dims[0]} labels")
    if count == MNIST_TRAIN_SIZE:
        raise ValueError(f"headers say {count} samples, the full training set, which is not a shortened one: a "
                         "full-size file must match the official checksums (of the .gz or of its decompressed "
                         "content), and this one matches neither")
    if sizes != [16 + count * 784, 8 + count]:
        raise ValueError(f"truncated or padded: headers say {count} samples, payload sizes are {sizes} bytes, "
                         f"expected {[16 + count * 784, 8 + count]}")
    return count


def _payload_size(path: Path) -> int:
    """Size of an IDX file's content (decompressed when gzipped)."""
    size = 0
    with _open_idx(path) as handle:
        while block := handle.read(1 << 20):
            size += len(block)
    return size


def extract_gz(src: Path, dst: Path) -> None:
    with gzip.open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)

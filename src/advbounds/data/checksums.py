"""md5 checksums, and the manifest that vouches for synthetic stand-in files.

The manifest ``<data_dir>/<dataset>/SYNTHETIC_CHECKSUMS.json`` is written by
:func:`advbounds.data.write_synthetic` and read only when a run is configured ``synthetic: true``.
It replaces the official md5s for those runs; it never relaxes them for a real run::

    {"dataset": "mnist", "synthetic": true, "seed": 2017, "sizes": {...},
     "files": {"MNIST/raw/t10k-images-idx3-ubyte.gz": "<md5>", ...},
     "structure": {"train": 600, "test": 200}}
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

from advbounds.io import write_json

SYNTHETIC_MANIFEST = "SYNTHETIC_CHECKSUMS.json"


def md5_of(path: Path, normalize_newlines: bool = False, chunk: int = 1 << 20) -> str:
    """md5 of a file; with ``normalize_newlines`` every CRLF is read as LF first (Spambase, see specs)."""
    with open(path, "rb") as handle:
        if normalize_newlines:
            return md5_of_bytes(handle.read(), normalize_newlines=True)
        digest = hashlib.md5(usedforsecurity=False)
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_of_gunzipped(path: Path, chunk: int = 1 << 20) -> str:
    """md5 of a gzipped file's decompressed content, streamed in ``chunk``-sized blocks.

    Raises ``OSError`` (``gzip.BadGzipFile`` included), ``EOFError`` or ``zlib.error`` when the file
    is not one complete, intact gzip stream (a gzip CRC or length mismatch is an ``OSError``).
    """
    digest = hashlib.md5(usedforsecurity=False)
    with gzip.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_of_bytes(payload: bytes, normalize_newlines: bool = False) -> str:
    if normalize_newlines:
        payload = payload.replace(b"\r\n", b"\n")
    return hashlib.md5(payload, usedforsecurity=False).hexdigest()


def read_manifest_info(dataset_dir: Path) -> dict[str, Any]:
    """The whole synthetic manifest of a dataset folder (empty dict when there is none)."""
    path = Path(dataset_dir) / SYNTHETIC_MANIFEST
    if not path.exists():
        return {}
    info = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
        raise ValueError(f"{path} is not a synthetic-data manifest; delete it and rerun write_synthetic")
    return info


def read_manifest(dataset_dir: Path) -> dict[str, str]:
    """``relpath -> md5`` of the synthetic files of a dataset folder (empty when there is no manifest)."""
    return dict(read_manifest_info(dataset_dir).get("files", {}))


def write_manifest(dataset_dir: Path, files: dict[str, str], **info: Any) -> None:
    """Write the manifest (atomically): ``files`` maps paths relative to ``dataset_dir`` to md5s."""
    write_json({**info, "synthetic": True, "files": dict(sorted(files.items()))},
               Path(dataset_dir) / SYNTHETIC_MANIFEST)

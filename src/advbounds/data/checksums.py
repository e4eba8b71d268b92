"""md5 checksums, and the manifest that vouches for synthetic stand-in files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from advbounds.io import write_json

SYNTHETIC_MANIFEST = "SYNTHETIC_CHECKSUMS.json"


def md5_of(path: Path, normalize_newlines: bool = False, chunk: int = 1 << 20) -> str:
    """md5 of a file; with ``normalize_newlines`` CRLF is read as LF first (Spambase, see specs)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        if normalize_newlines:
            digest.update(handle.read().replace(b"\r\n", b"\n"))
        else:
            for block in iter(lambda: handle.read(chunk), b""):
                digest.update(block)
    return digest.hexdigest()


def read_manifest(dataset_dir: Path) -> dict[str, str]:
    path = Path(dataset_dir) / SYNTHETIC_MANIFEST
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def write_manifest(dataset_dir: Path, files: list[Path]) -> None:
    write_json({Path(f).relative_to(dataset_dir).as_posix(): md5_of(Path(f)) for f in files},
               Path(dataset_dir) / SYNTHETIC_MANIFEST)

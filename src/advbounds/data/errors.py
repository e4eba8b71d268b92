"""Errors of the data layer; each message says what to do next."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DataError(RuntimeError):
    """Base class of every data-layer error."""


class DatasetUnavailableError(DataError):
    """Raw files are missing and may not be downloaded (offline or synthetic run), or every mirror failed.

    ``missing`` lists ``(urls, path)`` for each missing file. The message names the dataset, every URL
    the file can be downloaded from and the exact (absolute) path where it has to be put.
    ``url`` and ``path`` are those of the first missing file.
    """

    def __init__(self, dataset: str, missing: Sequence[tuple[Sequence[str], Path]],
                 reason: str = "the run is offline (config offline: true)", advice: str | None = None) -> None:
        if not missing:
            raise ValueError("DatasetUnavailableError needs at least one missing file")
        self.dataset = dataset
        self.missing = [(tuple(urls), Path(path).resolve()) for urls, path in missing]
        self.url, self.path = self.missing[0][0][0], self.missing[0][1]
        lines = [f"dataset {dataset!r}: {len(self.missing)} raw file(s) missing and {reason}."]
        for urls, path in self.missing:
            lines.append(f"  - {path.name}: download it from")
            lines.extend(f"        {url}" for url in urls)
            lines.append(f"    and put it at\n        {path}")
        lines.append(advice if advice is not None else
                     "Or run online (config offline: false) to download and verify it automatically.")
        super().__init__("\n".join(lines))


class ChecksumError(DataError):
    """A raw file does not match its published checksum: corrupt, truncated or not the official file.

    The file is never used. ``path``, ``expected`` and ``actual`` are kept as attributes. For a file
    that may also be verified by its decompressed content (MNIST), ``expected_content`` and
    ``actual_content`` give that second check (``actual_content`` says why when the file could not
    be decompressed); both are ``None`` otherwise.
    """

    def __init__(self, path: Path, expected: str, actual: str, hint: str = "", algorithm: str = "md5",
                 advice: str = "Delete it and download it again.", expected_content: str | None = None,
                 actual_content: str | None = None) -> None:
        self.path, self.expected, self.actual = Path(path), expected, actual
        self.expected_content, self.actual_content = expected_content, actual_content
        content = ""
        if expected_content is not None:
            content = (f"; its decompressed content: expected {algorithm} {expected_content}, "
                       f"got {actual_content}")
        super().__init__(
            f"checksum mismatch for {self.path}: expected {algorithm} {expected}, got {actual}{content}. "
            f"The file is corrupt, truncated or not the official one; it was not used. "
            f"{advice}{(' ' + hint) if hint else ''}"
        )

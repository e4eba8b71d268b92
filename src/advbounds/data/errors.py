"""Errors of the data layer; each message says what to do next."""

from __future__ import annotations

from pathlib import Path


class DataError(RuntimeError):
    """Base class of every data-layer error."""


class DatasetUnavailableError(DataError):
    """A raw file is missing and the run is offline (or the download failed)."""

    def __init__(self, dataset: str, url: str, path: Path, reason: str = "the run is offline") -> None:
        self.dataset, self.url, self.path = dataset, url, Path(path)
        super().__init__(
            f"{dataset}: raw file {self.path.name} is missing and {reason}. Download it from\n"
            f"    {url}\n"
            f"and put it at\n"
            f"    {self.path.resolve()}\n"
            f"(or run online, with config offline: false, to download it automatically)."
        )


class ChecksumError(DataError):
    """A raw file does not match its published checksum: corrupt, truncated or not the official file."""

    def __init__(self, path: Path, expected: str, actual: str, hint: str = "") -> None:
        self.path, self.expected, self.actual = Path(path), expected, actual
        super().__init__(
            f"checksum mismatch for {self.path}: expected md5 {expected}, got {actual}. "
            f"The file is corrupt, truncated or not the official one; it was not used. "
            f"Delete it and download it again.{(' ' + hint) if hint else ''}"
        )

"""Atomic file output.

Every job of the pipeline writes through these helpers: the data goes to a temporary file in the
target's folder and is renamed into place only once it is complete. An interrupted job therefore
never leaves a half-written output that a later run could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _temporary_sibling(target: Path, prefix: str, suffix: str) -> str:
    """Create an empty temporary file beside ``target`` with the mode a plain ``open()`` would give.

    ``mkstemp`` creates its file with mode 0600; renamed into place, an output would then be
    unreadable to the user's group (a shared results folder on a cluster). Reading the umask needs
    setting it, so it is set back at once.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    return tmp_name


@contextlib.contextmanager
def _renamed_over(tmp_name: str, target: Path) -> Iterator[None]:
    """Rename the temporary file ``tmp_name`` over ``target`` when the block succeeds; delete it if not."""
    try:
        yield
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    if not any(flag in mode for flag in "wx"):
        raise ValueError(f"atomic_write needs a write mode, got {mode!r}")
    target = Path(path)
    tmp_name = _temporary_sibling(target, f".{target.name}.", ".tmp")
    # the file is closed (the inner context) before it is renamed into place
    with _renamed_over(tmp_name, target), open(tmp_name, mode, **open_kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for libraries that insist on writing a path
    themselves (matplotlib, torch); it is renamed over ``path`` when the block succeeds."""
    target = Path(path)
    tmp_name = _temporary_sibling(target, f".{target.stem}.", target.suffix)
    with _renamed_over(tmp_name, target):
        yield Path(tmp_name)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it replaces
    ``path`` as a whole (the old folder, if any, is removed first), otherwise it is deleted."""
    import shutil
    import tempfile

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_frame(frame: Any, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False)


def _json_default(value: Any) -> Any:
    # numpy / torch scalars and arrays appear in metrics; make them plain JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

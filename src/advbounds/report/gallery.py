"""The gallery Snakemake's own ``--report`` browses: one copy of each thesis figure (PNG) and table
(CSV), filed as ``<out>/chapter<N>/<key>.<ext>`` so the report groups them by chapter. Written to a
temporary sibling folder and renamed into place, like every other output."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from advbounds.io import atomic_directory
from advbounds.report.catalog import BY_KEY, find_extra, gallery_chapter


def gallery_name(path: str | Path) -> str:
    """``figures/table_3_1.csv -> chapter3/table_3_1.csv``; an artifact outside the catalogue is an error."""
    path = Path(path)
    if path.stem not in BY_KEY and find_extra(path.stem) is None:
        raise KeyError(f"{path} is not a thesis table or figure of the catalogue, nor an extra artifact")
    return f"chapter{gallery_chapter(path.stem)}/{path.name}"


def build_gallery(files: Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    with atomic_directory(out_dir) as tmp:
        for source in files:
            target = tmp / gallery_name(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(out_dir / gallery_name(source))
    return written

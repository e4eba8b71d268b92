"""Helpers for the notebooks in ``notebooks/``: find the results, load them, slice them.

Notebooks only read what the pipeline wrote (tables, figures, per-sample CSVs, provenance); nothing
here computes anything expensive. The results folder comes from the ``ADVBOUNDS_RESULTS``
environment variable and defaults to the repository root (found by walking up to the Snakefile).
A file the pipeline has not produced raises ``FileNotFoundError`` naming the snakemake target that
builds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from advbounds.report.catalog import BY_KEY, CATALOG, REPORT_VERDICTS, shown_file

ENV_VAR = "ADVBOUNDS_RESULTS"


def results_root(start: str | Path | None = None) -> Path:
    """``$ADVBOUNDS_RESULTS`` if set, else the first folder upwards of ``start`` (default: the
    working directory) that holds a Snakefile, i.e. the repository root."""
    if os.environ.get(ENV_VAR):
        root = Path(os.environ[ENV_VAR]).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={root} is not a folder")
        return root
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Snakefile").exists():
            return folder
    raise FileNotFoundError(f"no Snakefile above {here}; set {ENV_VAR} to the folder holding results/ and figures/")


def require(root: Path, relative: str) -> Path:
    path = Path(root) / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; build it with `snakemake --cores all {relative}`")
    return path


def table(root: Path, key: str) -> pd.DataFrame:
    """A thesis table as the pipeline wrote it (``table_5_2`` -> figures/table_5_2.csv)."""
    return pd.read_csv(require(root, shown_file(key)))


def figure(root: Path, key: str, width: int | None = 720):
    """A thesis figure (its PNG) for display in a notebook."""
    from IPython.display import Image

    return Image(filename=str(require(root, shown_file(key))), width=width)


def read_csvs(root: Path, pattern: str, label: str | None = None) -> pd.DataFrame:
    """Every CSV matching ``pattern`` under ``root``, stacked; ``label`` adds a column holding each
    file's stem (e.g. the model name of results/attacks/<model>.csv)."""
    paths = sorted(Path(root).glob(pattern))
    if not paths:
        raise FileNotFoundError(f"no files match {Path(root) / pattern}; run the pipeline first")
    frames = []
    for path in paths:
        frame = pd.read_csv(path)
        if label:
            frame.insert(0, label, path.stem)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def verdicts(root: Path, chapter: int | None = None) -> pd.DataFrame:
    """The report's verdict of every published number (results/report/verdicts.csv), with the
    thesis label and chapter of each item; optionally one chapter only."""
    frame = pd.read_csv(require(root, REPORT_VERDICTS))
    frame.insert(0, "label", frame["item"].map(lambda k: BY_KEY[k].label if k in BY_KEY else k))
    frame.insert(1, "chapter", frame["item"].map(lambda k: BY_KEY[k].chapter if k in BY_KEY else None))
    if chapter is not None:
        frame = frame[frame["chapter"] == chapter]
    return frame.reset_index(drop=True)


def provenance(root: Path, artifact: str) -> dict[str, Any]:
    """The provenance record of one artifact (config values, seed, device, versions, commit, runtime)."""
    return json.loads(require(root, f"results/provenance/{artifact}.json").read_text())


def provenance_table(root: Path, artifacts: Iterable[str]) -> pd.DataFrame:
    """One row per artifact: rule, seed, device, git commit, runtime, torch version."""
    rows = []
    for artifact in artifacts:
        record = provenance(root, artifact)
        rows.append({"artifact": artifact, "rule": record.get("rule"), "seed": record.get("seed"),
                     "device": record.get("device"), "git_commit": str(record.get("git_commit", ""))[:12],
                     "runtime_s": record.get("runtime_s"),
                     "torch": (record.get("packages") or {}).get("torch"),
                     "finished_at": record.get("finished_at")})
    return pd.DataFrame(rows)


def chapter_items(chapter: int) -> list[str]:
    """Keys of the generated thesis items of one chapter (for looping over its figures and tables)."""
    return [item.key for item in CATALOG if item.chapter == chapter and item.files]


def smallest(frame: pd.DataFrame, column: str, n: int = 10, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The ``n`` rows with the smallest ``column`` (per group of ``by`` when given), NaN rows dropped."""
    frame = frame.dropna(subset=[column])
    if by is None:
        return frame.nsmallest(n, column)
    return (frame.sort_values(column, kind="stable").groupby(by, sort=True, group_keys=False).head(n)
            .sort_values([*([by] if isinstance(by, str) else by), column], kind="stable"))


def per_class_summary(frame: pd.DataFrame, by: str | Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Count, median and minimum of ``columns`` per value of ``by`` (e.g. per true class)."""
    agg = {f"{c}_{stat}": (c, stat) for c in columns for stat in ("median", "min")}
    out = frame.groupby(by).agg(samples=(columns[0], "size"), **agg)
    return out.reset_index()

"""Writing the thesis's tables and figures: one style, atomic files.

Tables go out as CSV (for machines), Markdown (for the README and notebooks) and LaTeX (for papers);
figures as PDF (vector, for print) and PNG (for the report). Every file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from advbounds.io import atomic_path, write_frame, write_text
from advbounds.layout import FIGURE_SUFFIXES, TABLE_SUFFIXES


def write_table(frame: pd.DataFrame, paths: Iterable[str | os.PathLike], caption: str = "",
                float_format: str = "{:.6g}") -> None:
    """Write ``frame`` to each path, the format taken from its suffix (.csv, .md, .tex)."""
    for path in map(Path, paths):
        suffix = path.suffix.lstrip(".")
        if suffix == "csv":
            write_frame(frame, path)
        elif suffix == "md":
            write_text(_markdown(frame, float_format, caption), path)
        elif suffix == "tex":
            write_text(_latex(frame, float_format, caption), path)
        else:
            raise ValueError(f"unknown table format {path.suffix!r} for {path}; use one of {TABLE_SUFFIXES}")


def save_figure(fig, paths: Iterable[str | os.PathLike], dpi: int = 200) -> None:
    """Save a matplotlib figure to each path (.pdf, .png) atomically, then close it."""
    import matplotlib.pyplot as plt

    for path in map(Path, paths):
        if path.suffix.lstrip(".") not in FIGURE_SUFFIXES:
            raise ValueError(f"unknown figure format {path.suffix!r} for {path}; use one of {FIGURE_SUFFIXES}")
        with atomic_path(path) as tmp:
            # metadata without a creation date keeps the PDF bytes identical across runs
            metadata = {"CreationDate": None} if path.suffix == ".pdf" else {"Software": None}
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip("."), metadata=metadata)
    plt.close(fig)


def use_style() -> None:
    """The one plotting style of the project: headless backend, seaborn's paper context."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def _fmt(value, float_format: str) -> str:
    if isinstance(value, float):
        return float_format.format(value)
    return str(value)


def _markdown(frame: pd.DataFrame, float_format: str, caption: str) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_fmt(v, float_format) for v in row) + " |" for row in frame.itertuples(index=False)]
    text = "\n".join([header, rule, *rows]) + "\n"
    return (f"{caption}\n\n{text}" if caption else text)


def _latex(frame: pd.DataFrame, float_format: str, caption: str) -> str:
    def esc(text: str) -> str:
        return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

    cols = "l" * len(frame.columns)
    lines = [r"\begin{table}[ht]", r"\centering", rf"\begin{{tabular}}{{{cols}}}", r"\hline",
             " & ".join(esc(str(c)) for c in frame.columns) + r" \\", r"\hline"]
    lines += [" & ".join(esc(_fmt(v, float_format)) for v in row) + r" \\" for row in frame.itertuples(index=False)]
    lines += [r"\hline", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{esc(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"

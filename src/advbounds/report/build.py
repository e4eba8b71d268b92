"""Assemble the report: for every thesis item, our artifacts, the published values, the verdicts,
the reasons we know and the provenance of each file. :func:`build_model` gathers (into the records of
:mod:`.model`), :mod:`.html` renders, :func:`write_report` does both and writes the file atomically.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from advbounds.io import write_text
from advbounds.report import sources
from advbounds.report.catalog import CATALOG, ThesisItem, shown_file
from advbounds.report.compare import MISSING, Comparison, reasons_for
from advbounds.report.comparisons import Context, compare_item
from advbounds.report.html import render_html
from advbounds.report.model import Artifact, ItemReport, ReportModel, SandwichReport

__all__ = ["Artifact", "ItemReport", "ReportModel", "SandwichReport", "build_model", "comparisons_frame",
           "sandwich_report", "with_best_reading", "write_report", "write_report_files"]

log = logging.getLogger("advbounds.report")

SYNTHETIC_REASON = ("this run uses synthetic stand-in data and tiny sizes (config synthetic: true), so its "
                    "numbers are not comparable to the thesis; the verdicts only show the pipeline end to end")


def sandwich_report(root: Path) -> SandwichReport | None:
    """What the run wrote for the sandwich (results/sandwich/<name>.csv, figures/sandwich_*), or
    None when it wrote nothing of it."""
    from advbounds.experiments import sandwich

    root = Path(root)
    tables = sorted((root / "results" / "sandwich").glob("*.csv"))
    summary_csv = root / shown_file("sandwich_summary")
    if not tables and not summary_csv.exists():
        return None
    out = SandwichReport(pd.read_csv(summary_csv) if summary_csv.exists() else None)
    for path in tables:
        frame = pd.read_csv(path)
        out.paragraphs[path.stem] = sandwich.describe(path.stem, frame)
        out.violations[path.stem] = sandwich.sound_violations(frame)
        image = root / shown_file(f"sandwich_{path.stem}")
        if image.exists():
            out.images[path.stem] = base64.b64encode(image.read_bytes()).decode("ascii")
    return out


def _artifact(root: Path, path: str) -> Artifact:
    full = root / path
    if not full.exists():
        return Artifact(path, False)
    data = full.read_bytes()
    record = sources.load_provenance(root, path)
    jobs, unrecorded = sources.lineage(root, path) if record is not None else ([], [])
    return Artifact(path, True, len(data), hashlib.sha256(data).hexdigest(), record, jobs, unrecorded)


def build_model(root: str | Path, *, paper_values_path: str | Path, findings_path: str | Path | None,
                settings: Mapping[str, Any], run: Mapping[str, Any] | None = None,
                artifacts: Iterable[str] = (), items: Sequence[ThesisItem] = CATALOG,
                best_reading: pd.DataFrame | None = None) -> ReportModel:
    """Gather everything the report shows. ``root``: the folder holding ``figures/`` and ``results/``;
    ``artifacts``: every final artifact of the run (the report lists the ones outside the catalogue
    too); ``run``: run-wide facts (``synthetic``, ``seed``, ``device``, ``configfiles``);
    ``best_reading``: the protocol study's second verdict per number
    (``experiments.protocol.best_reading_verdicts``), or None where the run has no study."""
    root = Path(root)
    run = dict(run or {})
    paper_text = Path(paper_values_path).read_text(encoding="utf-8")
    paper = sources.load_paper_values(paper_values_path)
    notes = sources.notes_by_item(paper, items)
    findings: list[sources.Finding] = []
    if findings_path is not None and Path(findings_path).exists():
        findings = sources.split_findings(Path(findings_path).read_text(encoding="utf-8"))
    by_item = sources.findings_by_item(findings, items)
    context_reasons = [SYNTHETIC_REASON] if run.get("synthetic") else []
    known = {item.key: reasons_for(item.key, notes, {k: [f.summary for f in v] for k, v in by_item.items()},
                                   context_reasons) for item in items}
    ctx = Context(root=root, paper=paper, settings=settings, reasons=known)

    second = second_verdicts(best_reading)
    reports = []
    for item in items:
        arts = [_artifact(root, path) for path in item.files]
        problems = [f"{a.path} is missing" for a in arts if not a.exists]
        problems += [f"{a.path} has no provenance record" for a in arts if a.exists and a.provenance is None]
        for problem in problems:  # an artifact the run should have made is not there: a real error
            log.error("%s: %s", item.label, problem)
        comparisons = with_best_reading(compare_item(item.key, ctx) if item.generated else [], second)
        # a number we could not compare (e.g. a NaN statistic over no sample) is expected on small
        # runs: the report shows it with its reason, and the log notes it as a warning only
        gaps = [f"{c.quantity}: {c.reasons[0]}" for c in comparisons if c.verdict == MISSING and c.reasons]
        for gap in gaps:
            log.warning("%s: %s", item.label, gap)
        problems += gaps
        table = None
        if item.kind == "table" and (root / shown_file(item.key)).exists():
            table = pd.read_csv(root / shown_file(item.key))
        image = None
        if item.image and (root / item.image).exists():
            image = base64.b64encode((root / item.image).read_bytes()).decode("ascii")
        data_tables = {path: pd.read_csv(root / path) for path in item.data_files
                       if path.endswith(".csv") and (root / path).exists()}
        blocks = [sources.published_block(paper_text, key) for key in item.paper_keys]
        reports.append(ItemReport(item, arts, comparisons, known[item.key], by_item.get(item.key, []),
                                  "\n".join(b for b in blocks if b), table, image, problems, data_tables))

    catalogued = {path for item in items for path in item.files}
    others = [_artifact(root, str(path)) for path in dict.fromkeys(map(str, artifacts))
              if str(path) not in catalogued]
    return ReportModel(reports, others, settings, run, context_reasons, findings,
                       str(findings_path) if findings else None, sources.paper_notes(paper), paper,
                       sandwich_report(root))


def second_verdicts(best_reading: pd.DataFrame | None) -> dict[tuple[str, str], Any]:
    """The protocol study's rows by (item, quantity), built once per report."""
    if best_reading is None:
        return {}
    return {(row.item, row.quantity): row for row in best_reading.itertuples(index=False)}


def with_best_reading(comparisons: list[Comparison], second: Mapping[tuple[str, str], Any]) -> list[Comparison]:
    """Each comparison with its second verdict, where the study has the same (item, quantity)."""
    out = []
    for c in comparisons:
        row = second.get((c.item, c.quantity))
        if row is not None and isinstance(row.best_verdict, str):
            c = replace(c, best_reading=row.best_reading, best_reading_value=row.best_value,
                        best_reading_verdict=row.best_verdict)
        out.append(c)
    return out


def write_report(output: str | Path, root: str | Path = ".", **kwargs: Any) -> ReportModel:
    """Build the model, render it and write ``output`` atomically. Returns the model."""
    model = build_model(root, **kwargs)
    write_text(render_html(model), output)
    counts = model.tally
    log.info("report: %s", ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    return model


def write_report_files(html_path: str | Path, verdicts_path: str | Path, root: str | Path = ".", *,
                       paper_values_path: str | Path, findings_path: str | Path | None,
                       settings: Mapping[str, Any], run: Mapping[str, Any], artifacts: Sequence[str],
                       protocol_study: Mapping[str, Any]) -> ReportModel:
    """The report's two files: the page and every verdict as CSV. Each number's second verdict comes
    from the protocol study where the run made it (``protocol_study``: its config section)."""
    from advbounds.experiments.protocol import read_best_reading_verdicts
    from advbounds.io import write_frame

    study = shown_file("protocol_study")
    best_reading = read_best_reading_verdicts(Path(root) / study, protocol_study) if study in artifacts else None
    model = write_report(html_path, root=root, paper_values_path=paper_values_path, findings_path=findings_path,
                         settings=settings, run=run, artifacts=artifacts, best_reading=best_reading)
    write_frame(comparisons_frame(model), verdicts_path)
    return model


def comparisons_frame(model: ReportModel) -> pd.DataFrame:
    """Every verdict as one flat table (for notebooks and tests)."""
    return pd.DataFrame([c.as_row() for c in model.comparisons])

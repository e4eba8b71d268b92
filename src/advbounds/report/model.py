"""What the report shows, as plain data: the artifacts, comparisons and findings of every thesis
item, and the "Beyond the thesis" section. :mod:`.build` fills these records in and :mod:`.html`
renders them; neither module imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from advbounds.report import sources
from advbounds.report.catalog import ThesisItem
from advbounds.report.compare import MISSING, NOT_COMPARED, Comparison, tally, worst


@dataclass
class Artifact:
    path: str
    exists: bool
    size: int = 0
    sha256: str = ""
    provenance: dict[str, Any] | None = None
    lineage: list[dict[str, Any]] = field(default_factory=list)
    unrecorded_inputs: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        return sources.summarize_lineage(self.lineage)


@dataclass
class ItemReport:
    item: ThesisItem
    artifacts: list[Artifact]
    comparisons: list[Comparison]
    known_reasons: list[str]
    findings: list[sources.Finding]
    published_text: str
    table: pd.DataFrame | None = None
    image_b64: str | None = None
    problems: list[str] = field(default_factory=list)
    data_tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if not self.item.generated:
            return NOT_COMPARED
        if any(not a.exists for a in self.artifacts):
            return MISSING
        return worst(c.verdict for c in self.comparisons)


@dataclass
class SandwichReport:
    """The "Beyond the thesis" section: per experiment a paragraph, its figure (base64 PNG), and
    the summary table (figures/sandwich_summary.csv)."""

    summary: pd.DataFrame | None
    paragraphs: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    violations: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class ReportModel:
    items: list[ItemReport]
    other_artifacts: list[Artifact]
    settings: Mapping[str, Any]
    run: Mapping[str, Any]
    context_reasons: list[str]
    findings: list[sources.Finding]
    findings_source: str | None
    paper_notes: dict[str, list[str]]
    paper: Mapping[str, Any] = field(default_factory=dict)
    sandwich: SandwichReport | None = None

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for item in self.items for c in item.comparisons]

    @property
    def tally(self) -> dict[str, int]:
        return tally(self.comparisons)

    @property
    def best_reading(self) -> str:
        """The protocol study's best single reading, if the run has one (it is the same for every number)."""
        return next((c.best_reading for c in self.comparisons if c.best_reading), "")

    @property
    def best_reading_tally(self) -> dict[str, int]:
        """The verdicts again, each number under the best reading where the study has it, else the stated one."""
        return tally([replace(c, verdict=c.best_reading_verdict or c.verdict) for c in self.comparisons])

    @property
    def problems(self) -> list[str]:
        return [f"{item.item.label}: {p}" for item in self.items for p in item.problems] + [
            f"{a.path}: no provenance record" for a in self.other_artifacts if a.exists and a.provenance is None]



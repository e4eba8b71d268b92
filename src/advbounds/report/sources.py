"""Reading what the report sets side by side: published values, findings, provenance.

* ``reference/paper_values.yaml``: the thesis's numbers, with ``note:`` entries on inconsistencies
  we found; ``published_block`` also keeps the YAML comments, which explain units and sources.
* ``docs/findings.md``: what the bounds engineer found (thesis inequalities proven false, choices the
  thesis leaves open). ``parse_findings`` splits it into blocks and files each block under the thesis
  items it names, so a verdict can cite it.
* ``results/provenance/<artifact>.json`` (written by :mod:`advbounds.jobs`): each record names the
  job's inputs, so ``lineage`` follows them upstream and returns every job that fed an artifact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from advbounds.report.catalog import CATALOG, ThesisItem

PROVENANCE_DIR = Path("results/provenance")


# ------------------------------------------------------------------------------------------------
# paper_values.yaml
# ------------------------------------------------------------------------------------------------


class _Yaml12BoolLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false. Under YAML 1.1 the column name ``no`` of
    Tables 3.1 and 4.2 would load as ``False``."""


_Yaml12BoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12BoolLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_paper_values(path: str | Path) -> dict[str, Any]:
    values = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_Yaml12BoolLoader)  # noqa: S506
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of thesis items, got {type(values).__name__}")
    return values


def paper_notes(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """``note:`` entries by top-level key (whitespace folded)."""
    notes: dict[str, list[str]] = {}
    for key, entry in values.items():
        if isinstance(entry, Mapping) and entry.get("note"):
            notes.setdefault(key, []).append(" ".join(str(entry["note"]).split()))
    return notes


def notes_by_item(values: Mapping[str, Any], items: Iterable[ThesisItem] = CATALOG) -> dict[str, list[str]]:
    """The notes that concern each catalogue item (through its ``paper_keys``)."""
    raw = paper_notes(values)
    return {item.key: [n for k in item.paper_keys for n in raw.get(k, [])] for item in items}


def published_block(text: str, key: str) -> str:
    """The YAML text of one top-level key, comments included (what the thesis printed, as we copied it)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(rf"^{re.escape(key)}\s*:", line)), None)
    if start is None:
        return ""
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " #\t"):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


# ------------------------------------------------------------------------------------------------
# docs/findings.md
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    heading: str
    text: str
    anchor: str
    #: an overview (the document's preamble, a "Summary" section): shown, never cited by a verdict
    overview: bool = False

    @property
    def summary(self) -> str:
        """What a verdict cites: the section heading, else the first sentence (at most ~300 characters)."""
        if self.heading:
            return re.sub(r"[*`]", "", self.heading)
        flat = " ".join(self.text.split())
        flat = re.sub(r"^[-*+]\s+|^\d+[.)]\s+", "", flat)
        sentence = re.split(r"(?<=[.!?])\s", flat, maxsplit=1)[0]
        return sentence if len(sentence) <= 300 else sentence[:297].rstrip() + "..."


OVERVIEW_HEADINGS = ("summary", "overview", "contents", "table of contents")


def split_findings(markdown: str) -> list[Finding]:
    """The sections of a findings document, one :class:`Finding` each (``##`` and deeper headings
    start a section; the text before the first one, under the ``#`` title, is the preamble). A
    document without any ``##`` heading is split into paragraphs and top-level list items instead."""
    lines = markdown.splitlines()
    in_code = False
    starts = []
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"^#{2,6}\s+\S", line):
            starts.append(index)
    if not starts:
        return _split_blocks(markdown)
    findings = []
    bounds = [0, *starts, len(lines)]
    for n, (begin, end) in enumerate(zip(bounds, bounds[1:])):
        chunk = lines[begin:end]
        heading = ""
        if chunk and (match := re.match(r"^#{1,6}\s+(.*)", chunk[0])):
            heading = match.group(1).strip().strip("#").strip()
            chunk = chunk[1:]
        text = "\n".join(chunk).strip().strip("-").strip()
        if not text and not heading:
            continue
        overview = n == 0 or heading.lower().rstrip(":") in OVERVIEW_HEADINGS
        findings.append(Finding(heading, text, f"finding-{len(findings) + 1}", overview))
    return findings


def _split_blocks(markdown: str) -> list[Finding]:
    """Paragraphs and top-level list items of a document without section headings."""
    findings: list[Finding] = []
    block: list[str] = []

    def flush() -> None:
        text = "\n".join(block).strip()
        if text:
            findings.append(Finding("", text, f"finding-{len(findings) + 1}"))
        block.clear()

    in_code = False
    after_blank = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            block.append(line)
        elif in_code:
            block.append(line)
        elif re.match(r"^#\s+", line):
            flush()
        elif not line.strip():
            # a blank line ends a paragraph; a list item may go on with indented lines
            if block and not re.match(r"^([-*+]|\d+[.)])\s", block[0]):
                flush()
            after_blank = True
            continue
        elif re.match(r"^([-*+]|\d+[.)])\s", line) or (after_blank and not line.startswith((" ", "\t"))):
            flush()
            block.append(line)
        else:
            block.append(line)
        after_blank = False
    flush()
    return findings


def _mentions(text: str, phrase: str) -> bool:
    # word-ish boundaries so "Table 4.1" does not match "Table 4.12" and "LRN" not "LRNs"-less words
    return re.search(rf"(?<![\w.]){re.escape(phrase)}(?![\w]|\.\d)", text, flags=re.IGNORECASE) is not None


def item_phrases(item: ThesisItem) -> list[str]:
    return [item.label, item.key, *item.topics]


def findings_by_item(findings: Sequence[Finding], items: Iterable[ThesisItem] = CATALOG) -> dict[str, list[Finding]]:
    """File each finding under every item whose label, key or topics it mentions (heading included)."""
    out: dict[str, list[Finding]] = {}
    for item in items:
        phrases = item_phrases(item)
        out[item.key] = [f for f in findings if not f.overview
                         and any(_mentions(f"{f.heading}\n{f.text}", p) for p in phrases)]
    return out


# ------------------------------------------------------------------------------------------------
# Provenance
# ------------------------------------------------------------------------------------------------


def provenance_file(root: str | Path, artifact: str | Path) -> Path:
    return Path(root) / PROVENANCE_DIR / f"{artifact}.json"


def load_provenance(root: str | Path, artifact: str | Path) -> dict[str, Any] | None:
    path = provenance_file(root, artifact)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def lineage(root: str | Path, artifact: str | Path | Iterable[str | Path],
            limit: int = 500) -> tuple[list[dict[str, Any]], list[str]]:
    """Every job upstream of ``artifact`` (itself first, then breadth-first), and the files met on
    the way that have no provenance record (inputs no job wrote, such as pre-staged raw data).
    ``artifact`` may be several files: their lineages are walked together, each job once.

    Jobs with several outputs appear once. Follows the ``inputs`` that jobs.py records.
    """
    jobs: list[dict[str, Any]] = []
    seen_jobs: set[tuple] = set()
    seen_files: set[str] = set()
    unrecorded: list[str] = []
    queue = [str(artifact)] if isinstance(artifact, (str, Path)) else [str(a) for a in artifact]
    while queue and len(jobs) < limit:
        path = queue.pop(0)
        if path in seen_files:
            continue
        seen_files.add(path)
        record = load_provenance(root, path)
        if record is None:
            unrecorded.append(path)
            continue
        identity = (record.get("rule"), json.dumps(record.get("wildcards", {}), sort_keys=True),
                    record.get("finished_at"))
        if identity not in seen_jobs:
            seen_jobs.add(identity)
            jobs.append(record)
        queue.extend(str(p) for p in record.get("inputs", []) if str(p) not in seen_files)
    return jobs, unrecorded


def summarize_lineage(jobs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Run-wide facts of a lineage: seeds, devices, commits, package sets and total runtime."""
    def distinct(key: str) -> list[Any]:
        values = []
        for job in jobs:
            value = job.get(key)
            if value not in values:
                values.append(value)
        return values

    packages = distinct("packages")
    return {
        "jobs": len(jobs),
        "seeds": distinct("seed"),
        "devices": distinct("device"),
        "device_names": distinct("device_name"),
        "git_commits": distinct("git_commit"),
        "packages": packages[0] if len(packages) == 1 else packages,
        "runtime_s": round(sum(float(job.get("runtime_s", 0.0)) for job in jobs), 3),
    }

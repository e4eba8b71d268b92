"""Render a :class:`~advbounds.report.model.ReportModel` as one self-contained HTML page.

No external resources: the stylesheet is inline, images are base64 PNGs, collapsible parts use the
native ``<details>`` element (no JavaScript). The page reads top-down: run summary and loud banners,
an overview of every thesis label with its verdict, then one card per item (published beside ours,
the verdict of every number with its reason, provenance), then the findings and notes.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from advbounds.report.catalog import shown_file
from advbounds.report.compare import DIFFERS, MISSING, NOT_COMPARED, REPRODUCED, SAME_ORDER, VERDICTS, Comparison
from advbounds.report.model import Artifact, ItemReport, ReportModel

CSS = """
:root { --ok:#1b7f3b; --near:#b26b00; --bad:#b3261e; --miss:#6d1b7b; --na:#6b7280; --line:#d9dce1; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#1f2328;
       margin:0; background:#f6f7f9; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 21px; margin: 36px 0 10px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 18px; margin: 0 0 6px; } h4 { font-size: 15px; margin: 14px 0 6px; }
.sub { color:#57606a; margin: 0 0 16px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin: 14px 0; }
.banner { border-radius:8px; padding:12px 16px; margin: 12px 0; font-weight:500; }
.banner.warn { background:#fff4e5; border:1px solid #f0b45a; }
.banner.error { background:#fde8e7; border:1px solid #e3928d; color:#7a1712; }
.banner ul { margin: 6px 0 0; font-weight: 400; }
.cols { display:grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.figure-cols { grid-template-columns: 1fr 2fr; }
@media (max-width: 900px) { .cols, .figure-cols { grid-template-columns: 1fr; } }
ol.notes li { margin-bottom: 3px; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; max-width: 100%; }
th, td { border-bottom:1px solid var(--line); padding: 3px 8px; text-align:left; vertical-align: top; }
td { overflow-wrap: anywhere; }
th { overflow-wrap: normal; hyphens: manual; }
table.wide { font-size: 11px; width: 100%; }
table.wide th, table.wide td { padding: 2px 4px; }
table.comparison td:first-child { min-width: 6em; }
table.comparison td:last-child { min-width: 16em; }
th { background:#f0f2f5; font-weight:600; }
td.num { text-align:right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x:auto; max-width:100%; }
.verdict { display:inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; font-weight:600;
           color:#fff; white-space:nowrap; }
.v-reproduced { background: var(--ok); } .v-same-order-of-magnitude { background: var(--near); }
.v-differs { background: var(--bad); } .v-missing { background: var(--miss); }
.v-not-compared { background: var(--na); }
.placeholder { border: 3px dashed var(--miss); color: var(--miss); padding: 24px; text-align:center;
               font-weight:700; background: repeating-linear-gradient(45deg,#fff,#fff 10px,#f6eef8 10px,#f6eef8 20px); }
img.figure { max-width: min(100%, 880px); border:1px solid var(--line); background:#fff; }
pre { background:#f6f8fa; border:1px solid var(--line); border-radius:6px; padding:8px 10px; overflow-x:auto;
      font-size:12px; margin: 4px 0; white-space: pre-wrap; }
code { font-size: 12.5px; background:#f0f2f5; padding: 0 3px; border-radius: 3px; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
.reasons { margin: 4px 0 0 0; padding-left: 18px; font-size: 13px; }
.muted { color:#57606a; font-size: 13px; }
.tally span { margin-right: 10px; }
nav.toc td { font-size: 13px; } nav.toc td code { white-space: nowrap; }
.kv td:first-child { color:#57606a; white-space: nowrap; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """Numbers for humans: 6 significant digits, integers as integers, missing as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def verdict_badge(verdict: str) -> str:
    return f'<span class="verdict v-{verdict.replace(" ", "-")}">{esc(verdict)}</span>'


#: a table with more columns than this gets the compact ``wide`` style (smaller font, full width)
WIDE_COLUMNS = 8


def _header(name: Any) -> str:
    """A column name that may break after its underscores and slashes (``min_perturbation_norm``)."""
    return re.sub(r"([_/])", r"\1<wbr>", esc(name))


def frame_table(frame: pd.DataFrame, max_rows: int = 60) -> str:
    head = "".join(f"<th>{_header(c)}</th>" for c in frame.columns)
    wide = ' class="wide"' if len(frame.columns) > WIDE_COLUMNS else ""
    body = []
    for row in frame.head(max_rows).itertuples(index=False):
        cells = []
        for value in row:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f'<td class="num">{esc(fmt(value))}</td>' if numeric else f"<td>{esc(fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="muted">{len(frame) - max_rows} more rows in the CSV</p>' if len(frame) > max_rows else ""
    return f'<div class="scroll"><table{wide}><tr>{head}</tr>{"".join(body)}</table></div>{more}'


def published_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return frame_table(pd.DataFrame([list(r) for r in rows], columns=list(columns)).astype(object))


_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline_markdown(text: str, *, links: bool = True) -> str:
    """Escape ``text`` and render inline Markdown: `code`, **bold**, *emphasis* and [links](url)
    as HTML anchors. ``links=False`` keeps only a link's text (for text that sits inside an anchor
    already: anchors do not nest)."""
    s = esc(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?!\w)", r"<em>\1</em>", s)
    s = _MD_LINK.sub(r'<a href="\2">\1</a>' if links else r"\1", s)
    return s


def markdown(text: str) -> str:
    """A small Markdown subset (headings, lists, fenced code, paragraphs, inline code/bold/links) for
    the findings document; anything else stays readable as plain text."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    paragraph: list[str] = []
    list_tag: str | None = None

    inline = inline_markdown

    def close_paragraph() -> None:
        if paragraph:
            out.append("<p>" + inline(" ".join(paragraph)) + "</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            close_paragraph()
            close_list()
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            out.append("<pre>" + esc("\n".join(block)) + "</pre>")
        elif line.lstrip().startswith("|"):
            close_paragraph()
            close_list()
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells):  # skip the |---| rule
                    rows.append(cells)
                i += 1
            i -= 1
            if rows:
                head = "".join(f"<th>{inline(c)}</th>" for c in rows[0])
                body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
                out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif m := re.match(r"^(#{1,6})\s+(.*)", line):
            close_paragraph()
            close_list()
            level = min(6, len(m.group(1)) + 2)
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif m := re.match(r"^\s*([-*+]|\d+[.)])\s+(.*)", line):
            close_paragraph()
            tag = "ol" if m.group(1)[0].isdigit() else "ul"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            item = [m.group(2)]
            while i + 1 < len(lines) and lines[i + 1].startswith("  ") and not re.match(
                    r"^\s*([-*+]|\d+[.)])\s", lines[i + 1]):
                i += 1
                item.append(lines[i].strip())
            out.append("<li>" + inline(" ".join(item)) + "</li>")
        elif not line.strip():
            close_paragraph()
            close_list()
        else:
            close_list()
            paragraph.append(line.strip())
        i += 1
    close_paragraph()
    close_list()
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------------


def table_notes(item: ItemReport) -> list[str]:
    """The numbered notes of an item's comparison table: the reasons known for the whole item, then
    every other reason that more than one row gives (in order of first appearance). Each is shown
    once, below the table; the rows cite it by number."""
    notes = list(dict.fromkeys(item.known_reasons))
    counts: dict[str, int] = {}
    for c in item.comparisons:
        for reason in dict.fromkeys(c.reasons):
            counts[reason] = counts.get(reason, 0) + 1
    notes += [r for r, n in counts.items() if n > 1 and r not in notes]
    return notes


def _cite(numbers: Iterable[int], anchor: str) -> str:
    """Links to an item's numbered notes, e.g. ``[1], [3]``."""
    return ", ".join(f'<a href="#{anchor}-note-{n}">[{n}]</a>' for n in numbers)


def _value_cell(value: Any) -> str:
    """A number right-aligned on one line; anything else (a list, a ranking) may wrap."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="num">{esc(fmt(value))}</td>' if numeric else f"<td>{esc(fmt(value))}</td>"


def _unit_line(c: Comparison) -> str:
    """The unit a number is compared in, under its name, where the table has it in several."""
    return f'<div class="muted">compared in {inline_markdown(c.unit)}</div>' if c.unit else ""


def _best_reading_line(c: Comparison) -> str:
    """The second verdict, under the first: the same number under the protocol study's best reading."""
    if not c.best_reading_verdict:
        return ""
    return (f'<div class="muted" title="{esc(c.best_reading)}">best reading: {esc(fmt(c.best_reading_value))} '
            f"{verdict_badge(c.best_reading_verdict)}</div>")


def _comparison_table(item: ItemReport) -> str:
    if not item.comparisons:
        return ('<p class="muted">The thesis gives no number for this item; it is shown for visual '
                "comparison.</p>")
    notes = {reason: i + 1 for i, reason in enumerate(table_notes(item))}
    cited_by_row = [sorted({notes[r] for r in c.reasons if r in notes}) for c in item.comparisons]
    # a note that every row cites is said once under the table, not on each row
    everywhere = set.intersection(*(set(c) for c in cited_by_row)) if len(cited_by_row) > 1 else set()
    anchor = esc(item.item.anchor)
    rows = []
    for c, cited in zip(item.comparisons, cited_by_row):
        own = [r for r in dict.fromkeys(c.reasons) if r not in notes]
        reasons = "".join(f"<li>{inline_markdown(r)}</li>" for r in own)
        cited = [n for n in cited if n not in everywhere]
        if cited:
            reasons += "<li>see " + _cite(cited, anchor) + "</li>"
        ratio = fmt(c.ratio) if c.ratio is not None else "\u2014"
        rows.append(
            f"<tr><td>{esc(c.quantity)}{_unit_line(c)}</td>{_value_cell(c.published)}"
            f"{_value_cell(c.reproduced)}<td class=\"num\">{esc(fmt(c.difference))}</td>"
            f"<td class=\"num\">{esc(ratio)}</td><td>{verdict_badge(c.verdict)}{_best_reading_line(c)}</td>"
            f"<td><ul class=\"reasons\">{reasons}</ul></td></tr>")
    footer = ""
    if everywhere:
        footer = (f'<p class="muted">Every row: see {_cite(sorted(everywhere), anchor)} '
                  "below.</p>")
    return ('<div class="scroll"><table class="comparison"><tr><th>quantity</th><th>thesis</th><th>ours</th>'
            "<th>ours \u2212 thesis</th><th>ours / thesis</th><th>verdict</th><th>reason</th></tr>"
            + "".join(rows) + "</table></div>" + footer)


def _notes_list(item: ItemReport) -> str:
    """The item's numbered notes (:func:`table_notes`), each once, with an anchor the rows cite."""
    notes = table_notes(item) if item.comparisons else list(dict.fromkeys(item.known_reasons))
    if not notes:
        return ""
    anchor = esc(item.item.anchor)
    # a reason that names a finding links to it in the appendix
    linked = {f"finding: {f.summary}": f for f in item.findings}

    def note(reason: str) -> str:
        if reason in linked:
            f = linked[reason]
            return f'finding: <a href="#{esc(f.anchor)}">{inline_markdown(f.heading or f.summary, links=False)}</a>'
        return inline_markdown(reason)

    return ('<h4>What we know about the differences</h4><ol class="reasons notes">'
            + "".join(f'<li id="{anchor}-note-{i}">{note(r)}</li>' for i, r in enumerate(notes, 1))
            + "</ol>")


def _published_panel(item: ItemReport, paper_rows: Mapping[str, Any] | None) -> str:
    parts = ["<h4>Thesis (published)</h4>"]
    if paper_rows and "columns" in paper_rows and "rows" in paper_rows:
        parts.append(published_table(paper_rows["columns"], paper_rows["rows"]))
    elif paper_rows and all(isinstance(v, Mapping) for v in paper_rows.values()):
        # a mapping of rows (Table 4.1's activations, Section 4.3.2's data sets): one table
        columns = list(dict.fromkeys(k for v in paper_rows.values() for k in v))
        rows = [[name, *(v.get(c) for c in columns)] for name, v in paper_rows.items()]
        parts.append(published_table(["", *columns], rows))
    if item.published_text:
        # beside a figure the copied values are all the thesis column holds: shown open
        opened = " open" if item.item.kind == "figure" else ""
        parts.append(f"<details{opened}><summary>as copied into reference/paper_values.yaml</summary>"
                     f"<pre>{esc(item.published_text)}</pre></details>")
    elif not paper_rows:
        parts.append('<p class="muted">paper_values.yaml holds no number for this item; the thesis shows '
                     "it as a picture.</p>")
    return "".join(parts)


def _figure_thesis_note(item: ItemReport) -> str:
    """What stands for the published side of a figure the thesis gives no number for: one line."""
    it = item.item
    return (f'<p class="muted thesis-note"><b>Thesis (published):</b> {esc(it.label)} is a picture in the '
            f"thesis (Section {esc(it.section)}); reference/paper_values.yaml holds no number for it, so "
            "ours is shown for visual comparison.</p>")


def _ours_panel(item: ItemReport) -> str:
    parts = ["<h4>This run</h4>"]
    if item.item.kind == "text":
        parts.append('<p class="muted">Numbers the thesis states in its text; ours are computed from the '
                     "per-sample results and model metrics (see the table below).</p>")
        return "".join(parts)
    missing = [a.path for a in item.artifacts if not a.exists]
    if missing:
        parts.append('<div class="placeholder">MISSING ARTIFACT<br>' + "<br>".join(esc(m) for m in missing)
                     + f"<br><span style=\"font-weight:400\">build it with <code>snakemake --cores all "
                       f"{esc(item.item.target)}</code></span></div>")
    if item.table is not None:
        parts.append(frame_table(item.table))
    if item.image_b64:
        parts.append(f'<img class="figure" alt="{esc(item.item.label)}" '
                     f'src="data:image/png;base64,{item.image_b64}">')
    for path, frame in item.data_tables.items():
        parts.append(f"<details><summary>the figure's data: <code>{esc(path)}</code></summary>"
                     f"{frame_table(frame, max_rows=40)}</details>")
    return "".join(parts)


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _json(value: Any) -> str:
    return "<pre>" + esc(json.dumps(value, indent=2, sort_keys=True, default=str)) + "</pre>"


def provenance_block(artifact: Artifact) -> str:
    if not artifact.exists:
        return f"<p><code>{esc(artifact.path)}</code>: missing</p>"
    record = artifact.provenance
    head = f"<code>{esc(artifact.path)}</code> ({artifact.size:,} bytes, sha256 {artifact.sha256[:16]}\u2026)"
    if record is None:
        return (f"<p>{head}</p><div class=\"banner error\">No provenance record at "
                f"<code>results/provenance/{esc(artifact.path)}.json</code>: the job did not go through "
                "advbounds.jobs.run_job.</div>")
    summary = artifact.summary
    packages = record.get("packages", {})
    rows = [
        ("rule", f"<code>{esc(record.get('rule'))}</code> {esc(json.dumps(record.get('wildcards', {})))}"),
        ("config values (params)", _json((record.get("params") or {}))),
        ("seed", esc(record.get("seed"))),
        ("device", f"{esc(record.get('device'))} ({esc(record.get('device_name', ''))}), "
                   f"{esc(record.get('threads', '?'))} thread(s)"),
        ("runtime", f"{float(record.get('runtime_s', 0)):.2f} s (this job); "
                    f"{summary['runtime_s']:.2f} s over the {summary['jobs']} job(s) that fed it"),
        ("finished", esc(record.get("finished_at", ""))),
        ("git commit", f"<code>{esc(record.get('git_commit', ''))}</code>"),
        ("python / packages", f"{esc(record.get('python', ''))}; "
                              + ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(packages.items()))),
    ]
    upstream = artifact.lineage[1:]
    lineage = ""
    if upstream:
        lines = "".join(
            f"<tr><td><code>{esc(job.get('rule'))}</code></td><td>{esc(json.dumps(job.get('wildcards', {})))}</td>"
            f"<td class=\"num\">{esc(job.get('seed'))}</td><td>{esc(job.get('device'))}</td>"
            f"<td class=\"num\">{float(job.get('runtime_s', 0)):.2f}</td>"
            f"<td><code>{esc(str(job.get('git_commit', ''))[:12])}</code></td>"
            f"<td><details><summary>params</summary>{_json(job.get('params', {}))}</details></td></tr>"
            for job in upstream)
        lineage = (f"<details><summary>{len(upstream)} upstream job(s) that fed this artifact</summary>"
                   "<table><tr><th>rule</th><th>wildcards</th><th>seed</th><th>device</th><th>runtime s</th>"
                   f"<th>commit</th><th>config values</th></tr>{lines}</table></details>")
    mixed = []
    for key, label in (("seeds", "seeds"), ("devices", "devices"), ("git_commits", "git commits")):
        if len(summary[key]) > 1:
            mixed.append(f"upstream jobs ran with different {label}: {esc(summary[key])}")
    if isinstance(summary["packages"], list):
        mixed.append("upstream jobs ran with different package versions")
    warning = "".join(f'<div class="banner warn">{m}</div>' for m in mixed)
    return f"<p>{head}</p>{_kv(rows)}{warning}{lineage}"


def _item_card(item: ItemReport, paper: Mapping[str, Any]) -> str:
    it = item.item
    target = (f'<span class="muted">target: <code>snakemake --cores all {esc(it.target)}</code></span>'
              if it.target else "")
    badge = verdict_badge(item.verdict) if it.generated else ""
    head = (f'<div class="card" id="{esc(it.anchor)}"><h3>{esc(it.label)}: {esc(it.caption)} '
            f"{badge}</h3><p class=\"muted\">Section {esc(it.section)}. {target}</p>")
    if not it.generated:
        return head + f'<p class="muted">Not regenerated: {esc(it.why_not_generated)}.</p></div>'
    paper_rows = next((paper[k] for k in it.paper_keys if isinstance(paper.get(k), Mapping)), None)
    if it.kind == "figure" and not paper_rows and not item.published_text:
        # nothing published to set beside the picture: a one-line note, the picture at full width
        body = [_figure_thesis_note(item), _ours_panel(item)]
    elif it.kind == "figure":  # the picture gets the room; the published numbers sit beside it
        body = [f'<div class="cols figure-cols"><div>{_published_panel(item, paper_rows)}</div>'
                f"<div>{_ours_panel(item)}</div></div>"]
    else:  # tables: the published one above ours, both full width (they are wide)
        body = [_published_panel(item, paper_rows), _ours_panel(item)]
    body += ["<h4>Comparison</h4>", _comparison_table(item)]
    problems = [p for p in item.problems if not p.endswith(" is missing")]  # the placeholder shows those
    if problems:
        body.append('<div class="banner error">Problems:<ul>' + "".join(f"<li>{esc(p)}</li>" for p in problems)
                    + "</ul></div>")
    body.append(_notes_list(item))
    if item.findings:
        body.append('<p class="muted">Findings that concern this item: '
                    + ", ".join(f'<a href="#{esc(f.anchor)}">{inline_markdown(f.heading or f.anchor, links=False)}</a>'
                                for f in item.findings)
                    + "</p>")
    if item.artifacts:
        body.append(f"<details><summary>Provenance of the {len(item.artifacts)} artifact file(s)</summary>"
                    + "".join(provenance_block(a) for a in item.artifacts) + "</details>")
    return head + "".join(body) + "</div>"


def _overview(model: ReportModel) -> str:
    rows = []
    for item in model.items:
        it = item.item
        counts = {v: 0 for v in VERDICTS}
        for c in item.comparisons:
            counts[c.verdict] += 1
        numbers = ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "\u2014"
        rows.append(f'<tr><td><a href="#{esc(it.anchor)}">{esc(it.label)}</a></td><td>{esc(it.caption)}</td>'
                    f"<td>{f'<code>{esc(it.target)}</code>' if it.target else chr(0x2014)}</td>"
                    f"<td>{verdict_badge(item.verdict) if it.generated else '<span class=muted>from the literature</span>'}"
                    f"</td><td>{esc(numbers)}</td></tr>")
    return ('<nav class="toc card"><h3>Every table and figure of the thesis</h3><div class="scroll"><table>'
            "<tr><th>thesis</th><th>caption</th><th>target</th><th>verdict (worst number)</th><th>numbers</th></tr>"
            + "".join(rows) + "</table></div></nav>")


def _tolerances(settings: Mapping[str, Any]) -> str:
    rows = []
    for name, spec in (settings.get("tolerances") or {}).items():
        parts = [f"{k} = {fmt(v)}" for k, v in spec.items()]
        rows.append(f"<tr><td><code>{esc(name)}</code></td><td>{esc(', '.join(parts))}</td></tr>")
    return ("<details><summary>How verdicts are decided (config <code>report:</code>)</summary>"
            "<p><b>reproduced</b>: |ours \u2212 thesis| \u2264 max(abs, rel \u00b7 |thesis|) (or half a unit in "
            "the thesis's last printed digit, where enabled); for one-sided statements (\u201cabove 99 %\u201d) "
            "ours satisfies the inequality. <b>same order of magnitude</b>: same sign and "
            f"|log10(ours / thesis)| \u2264 {esc(fmt(settings.get('order_of_magnitude')))}. <b>differs</b>: otherwise. "
            "<b>missing</b>: the pipeline produced no value (a loud placeholder). <b>not compared</b>: the thesis "
            "gives no number.</p><table><tr><th>tolerance class</th><th>values</th></tr>" + "".join(rows)
            + "</table><p class=\"muted\">Closed forms (Table 4.1, the parameters and values of Figures 5.12 and "
              "5.13) use <code>exact</code>; statistics of experiments use <code>statistical</code>; values the "
              "thesis gives as \u201cabout\u201d use <code>approximate</code>.</p></details>")


def _collapsible(what: str, entries: Sequence[str], open_up_to: int = 8) -> str:
    items = "<ul>" + "".join(f"<li>{e}</li>" for e in entries) + "</ul>"
    if len(entries) <= open_up_to:
        return items
    return f"<details><summary>{len(entries)} {esc(what)}</summary>{items}</details>"


def _sandwich_section(model: ReportModel) -> str:
    """Beyond the thesis: every lower bound and attack per model, and how tight the bounds are."""
    sw = model.sandwich
    if sw is None:
        return ""
    parts = ['<h2 id="beyond-the-thesis">Beyond the thesis: how tight are the bounds?</h2><div class="card">',
             "<p>Per test sample the true minimal L2 perturbation lies between what the lower bounds prove "
             "and what the attacks find: thesis bound, sound (corrected) bound and certified radius below it, "
             "the best of DeepFool, DDN, FMN and FGS above it. The thesis's bound is not sound "
             "(docs/findings.md), so a sample where it exceeds an attack is a finding; the corrected bound and "
             "the certified radius are proven, so a sample where either exceeds an attack would be a bug "
             "(the tests fail on it). LRN networks get no certified radius: the verifier has no bound for LRN, "
             "and with k = 1 LRN's Lipschitz constant is at least 1, so it can never raise a sound bound. "
             "Chapters 3-4 (Table 3.1 and 4.2 tests, trained MLPs): for a linear classifier the exact minimum is "
             "known in closed form and equals the thesis's Lemma 3.5 bound; the thesis's MLPs are tanh networks, "
             "certified by the verifier but too large (and not ReLU) for the exact reference.</p>"]
    bugs = {name: v for name, v in sw.violations.items() if v}
    if bugs:
        parts.append('<div class="banner error">A sound inequality is violated: '
                     + esc("; ".join(f"{n}: {v}" for n, v in bugs.items())) + "</div>")
    if sw.summary is not None:
        parts.append(f"<h3>Summary ({shown_file('sandwich_summary')})</h3>" + frame_table(sw.summary))
    for name, paragraph in sw.paragraphs.items():
        parts.append(f"<h3>{esc(name)}</h3><p>{esc(paragraph)}</p>")
        if name in sw.images:
            parts.append(f'<img alt="sandwich of {esc(name)}" style="max-width:880px;width:100%" '
                         f'src="data:image/png;base64,{sw.images[name]}">')
    parts.append("</div>")
    return "".join(parts)


def _best_reading_tally(model: ReportModel) -> str:
    """The tally again under the protocol study's best single reading (figures/protocol_study.md)."""
    if not model.best_reading:
        return ""
    counts = model.best_reading_tally
    return ('<div class="tally"><b>Under the protocol study\'s best reading</b> '
            f"({inline_markdown(model.best_reading)}; each row's second verdict): "
            + "".join(f"<span>{verdict_badge(v)} {counts[v]}</span>" for v in VERDICTS) + "</div>")


def render_html(model: ReportModel) -> str:
    paper = model.paper
    run = model.run
    counts = model.tally
    tally_html = "".join(f"<span>{verdict_badge(v)} {counts[v]}</span>" for v in VERDICTS)
    banners = []
    if model.context_reasons:
        banners.append('<div class="banner warn">' + "<br>".join(esc(r) for r in model.context_reasons) + "</div>")
    missing = [a.path for item in model.items for a in item.artifacts if not a.exists]
    if missing:
        banners.append(f'<div class="banner error">{len(missing)} artifact file(s) of the thesis are missing; '
                       "their places below hold placeholders."
                       + _collapsible("the missing files", [f"<code>{esc(m)}</code>" for m in missing]) + "</div>")
    problems = [p for p in model.problems if not p.endswith(" is missing")]
    if problems:
        banners.append(f'<div class="banner error">{len(problems)} problem(s) while comparing.'
                       + _collapsible("the problems", [esc(p) for p in problems]) + "</div>")
    run_rows = [(k, esc(fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v))) for k, v in run.items()]
    records = [a.provenance for item in model.items for a in item.artifacts if a.provenance] + [
        a.provenance for a in model.other_artifacts if a.provenance]
    if records:
        def distinct(values):
            return ", ".join(dict.fromkeys(str(v) for v in values if v is not None))

        run_rows += [
            ("git commit(s) of the artifacts", f"<code>{esc(distinct(r.get('git_commit') for r in records))}</code>"),
            ("devices", esc(distinct(f"{r.get('device')} ({r.get('device_name', '')})" for r in records))),
            ("torch / snakemake", esc(distinct(f"{(r.get('packages') or {}).get('torch')} / "
                                               f"{(r.get('packages') or {}).get('snakemake')}" for r in records))),
            ("artifacts finished", esc(f"{min(r.get('finished_at', '') for r in records)} .. "
                                       f"{max(r.get('finished_at', '') for r in records)}")),
        ]

    chapters: dict[int, list[str]] = {}
    for item in model.items:
        chapters.setdefault(item.item.chapter, []).append(_item_card(item, paper))
    titles = {1: "Introduction", 2: "Preliminaries", 3: "Linear classifiers", 4: "Multi-Layer Perceptrons",
              5: "Convolutional Neural Networks"}
    sections = "".join(f"<h2>Chapter {n}: {esc(titles.get(n, ''))}</h2>" + "".join(cards)
                       for n, cards in sorted(chapters.items()))

    others = _sandwich_section(model)
    if model.other_artifacts:
        others += ("<h2>Other artifacts of the run</h2><div class=\"card\">"
                  + "".join(f"<details><summary><code>{esc(a.path)}</code></summary>{provenance_block(a)}</details>"
                            for a in model.other_artifacts) + "</div>")
    appendix = ["<h2>Findings and notes</h2>"]
    if model.findings:
        appendix.append(f'<div class="card"><p class="muted">From <code>{esc(model.findings_source)}</code>, '
                        "block by block; each verdict above cites the blocks that name its item.</p>")
        heading = None
        for finding in model.findings:
            if finding.heading != heading:
                heading = finding.heading
                appendix.append(f"<h4>{inline_markdown(heading)}</h4>")
            appendix.append(f'<div id="{esc(finding.anchor)}">{markdown(finding.text)}</div>')
        appendix.append("</div>")
    else:
        appendix.append('<div class="banner warn">No findings document (docs/findings.md) was found; verdicts '
                        "cite only the notes of paper_values.yaml.</div>")
    if model.paper_notes:
        appendix.append('<div class="card"><h4>Inconsistencies noted in reference/paper_values.yaml</h4><ul>'
                        + "".join(f"<li><b>{esc(k)}</b>: {inline_markdown(n)}</li>" for k, notes in model.paper_notes.items()
                                  for n in notes) + "</ul></div>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Replication report: Robustness of Classifiers to Adversarial Perturbations</title>
<style>{CSS}</style></head><body><main>
<h1>Robustness of Classifiers to Adversarial Perturbations: replication report</h1>
<p class="sub">J. Peck, Ghent University, 2017. Every table and figure of the thesis beside the published
value, with a verdict per number and the provenance of every artifact.</p>
<div class="card"><div class="tally"><b>Numbers compared:</b> {tally_html}</div>{_best_reading_tally(model)}
{_kv(run_rows)}{_tolerances(model.settings)}</div>
{''.join(banners)}
{_overview(model)}
{sections}
{others}
{''.join(appendix)}
</main></body></html>
"""


__all__ = ["render_html", "markdown", "fmt", "esc", "provenance_block", "REPRODUCED", "SAME_ORDER", "DIFFERS",
           "MISSING", "NOT_COMPARED"]

"""The replication report: comparison logic, reason lookup, provenance lineage and the HTML page.

Unit tests run on tiny fabricated artifacts in tmp_path; the two workflow tests at the end check
that every thesis item has a rule (dry run) and that the README table lists every target.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml

from advbounds.metrics import ModelMetrics
from advbounds.report import build, catalog, compare, comparisons, gallery, sources
from advbounds.report.compare import (
    DIFFERS,
    MISSING,
    NOT_COMPARED,
    REPRODUCED,
    SAME_ORDER,
    Tolerance,
    compare_table,
    compare_value,
    printed_half_unit,
    verdict,
)
from advbounds.report.html import markdown, render_html

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "reference" / "paper_values.yaml"
SETTINGS = {
    "tolerances": {
        "exact": {"rel": 1e-6, "abs": 0.0, "printed_precision": True},
        "statistical": {"rel": 0.10, "abs": 0.0, "printed_precision": True},
        "approximate": {"rel": 0.10, "abs": 0.02, "printed_precision": False},
    },
    "order_of_magnitude": 1.0,
}
TOL = Tolerance(rel=0.1, orders=1.0)


# ------------------------------------------------------------------------------------------------
# compare.py: numbers
# ------------------------------------------------------------------------------------------------


def test_ratio_and_difference() -> None:
    assert compare.difference(3.0, 2.0) == 1.0
    assert compare.ratio(3.0, 2.0) == 1.5
    assert compare.ratio(3.0, 0.0) is None


@pytest.mark.parametrize("value, half", [(1.524, 0.0005), (2.09, 0.005), (7.274294e-08, 5e-15),
                                         (0.9994, 0.00005), (94.17, 0.005), (1e-08, 5e-09),
                                         (1.0, 0.0), (4767, 0.0)])  # whole numbers: no slack
def test_printed_half_unit(value: float, half: float) -> None:
    assert math.isclose(printed_half_unit(value), half, rel_tol=1e-9, abs_tol=0.0)


@pytest.mark.parametrize("ours, published, expected", [
    (1.05, 1.0, REPRODUCED),  # 5 % off, tolerance 10 %
    (0.91, 1.0, REPRODUCED),
    (1.2, 1.0, SAME_ORDER),
    (9.9, 1.0, SAME_ORDER),  # log10(9.9) < 1
    (10.5, 1.0, DIFFERS),
    (-1.0, 1.0, DIFFERS),  # opposite sign
    (0.0, 1.0, DIFFERS),
    (0.05, 0.0, DIFFERS),  # a published zero: only abs tolerance can reproduce it
    (None, 1.0, MISSING),
    (float("nan"), 1.0, MISSING),
    (1.0, None, NOT_COMPARED),
    ("99.94%", 0.9994, REPRODUCED),  # strings with units are read as numbers
])
def test_verdict(ours, published, expected) -> None:
    assert verdict(ours, published, TOL)[0] == expected


def test_verdict_uses_absolute_tolerance_and_printed_precision() -> None:
    assert verdict(1e-10, 0.0, Tolerance(rel=0.0, abs=1e-9))[0] == REPRODUCED
    exact = Tolerance(rel=1e-6, printed_precision=True)
    assert verdict(0.9 ** -4, 1.524, exact)[0] == REPRODUCED  # 1.52416 rounds to 1.524
    assert verdict(0.9 ** -4, 1.524, Tolerance(rel=1e-6))[0] == SAME_ORDER  # without printed precision
    assert verdict(1.5255, 1.524, exact)[0] == SAME_ORDER


def test_one_sided_statements() -> None:
    assert verdict(0.995, 0.99, TOL, mode="at_least")[0] == REPRODUCED
    assert verdict(0.5, 0.99, Tolerance(rel=0.1), mode="at_least")[0] == SAME_ORDER
    assert verdict(0.5, 0.99, TOL, mode="at_most")[0] == REPRODUCED
    with pytest.raises(ValueError):
        verdict(1, 1, TOL, mode="roughly")


def test_compare_value_records_ratio_difference_and_reasons() -> None:
    c = compare_value("table_5_2", "LeNet-5 / mean", 30.0, 26.72, TOL, reasons=["a known reason"])
    assert c.verdict == SAME_ORDER
    assert math.isclose(c.difference, 3.28) and math.isclose(c.ratio, 30 / 26.72)
    assert c.reasons[-1] == "a known reason" and "outside tolerance" in c.reasons[0]


def test_tolerance_from_config_and_validation() -> None:
    tol = Tolerance.from_config(SETTINGS, "approximate")
    assert (tol.rel, tol.abs, tol.printed_precision, tol.orders) == (0.1, 0.02, False, 1.0)
    with pytest.raises(KeyError, match="no class 'loose'"):
        Tolerance.from_config(SETTINGS, "loose")
    with pytest.raises(ValueError):
        Tolerance(rel=-0.1)


def test_worst_and_tally() -> None:
    assert compare.worst([REPRODUCED, SAME_ORDER]) == SAME_ORDER
    assert compare.worst([REPRODUCED, MISSING, DIFFERS]) == MISSING
    assert compare.worst([]) == NOT_COMPARED
    cs = [compare_value("x", "a", 1, 1, TOL), compare_value("x", "b", 5, 1, TOL)]
    assert compare.tally(cs)[REPRODUCED] == 1 and compare.tally(cs)[SAME_ORDER] == 1


# ------------------------------------------------------------------------------------------------
# compare.py: tables
# ------------------------------------------------------------------------------------------------

PUBLISHED = {"columns": ["no", "samples", "sample_interval", "mean", "std"],
             "rows": [[1, 10, [-1, 1], 1.0, 0.5], [2, 10, [-10, 10], 4.0, 2.0], [3, 10, [-1, 1], 2.0, 1.0]]}


def test_compare_table_matches_rows_and_flags_setup_differences() -> None:
    ours = [{"No": 1, "Samples": 10, "Sample interval": "[-1.0, 1.0]", "Mean": 1.02, "Std": 0.5},
            {"No": "2", "Samples": 3, "Sample interval": "[-10, 10]", "Mean": 9.0, "Std": 2.0}]
    out = compare_table("table_3_1", PUBLISHED, ours, TOL, key="no", result_columns=["mean", "std"],
                        setup_columns=["samples", "sample_interval"], reasons=["base"])
    by = {c.quantity: c for c in out}
    assert by["1 / mean"].verdict == REPRODUCED
    assert not any("setup differs" in r for r in by["1 / mean"].reasons)  # [-1.0, 1.0] == [-1, 1]
    assert by["2 / mean"].verdict == SAME_ORDER
    assert any("setup differs: samples = 3 here, 10 in the thesis" in r for r in by["2 / mean"].reasons)
    assert "base" in by["2 / std"].reasons
    assert by["3 / mean"].verdict == MISSING and "no row '3'" in by["3 / mean"].reasons[0]


def test_compare_table_aliases_and_missing_columns() -> None:
    published = {"columns": ["network", "normalized_empirical_bound", "rate"],
                 "rows": [["LeNet-5", 0.93, 0.9994], ["CIFAR-NIN", 0.31, 0.9304]]}
    ours = [{"network": "LeNet-5", "normalized_empirical_bound_per_pixel": 0.95},
            {"network": "lenet5", "normalized_empirical_bound_per_pixel": 50.0}]
    out = compare_table("table_5_1", published, ours, TOL, key="network",
                        result_columns=["normalized_empirical_bound", "rate"],
                        aliases={"normalized_empirical_bound_per_pixel": "normalized_empirical_bound"})
    by = {c.quantity: c for c in out}
    assert by["LeNet-5 / normalized_empirical_bound"].verdict == REPRODUCED
    assert by["LeNet-5 / rate"].verdict == MISSING
    assert by["CIFAR-NIN / rate"].verdict == MISSING
    with pytest.raises(KeyError):
        compare_table("t", published, ours, TOL, key="nope", result_columns=["rate"])


def test_match_row_exact_then_unique_prefix() -> None:
    rows = {"sigm": 1, "tanh": 2, "lenet_5": 3, "lenet_lrn1": 4}
    assert compare.match_row("sigmoid", rows) == 1 and compare.match_row("tanh", rows) == 2
    assert compare.match_row("lenet", rows) is None  # ambiguous
    assert compare.match_row("relu", rows) is None


def test_nan_is_missing_with_its_own_reason() -> None:
    outcome, why = verdict(float("nan"), 1.0, TOL)
    assert outcome == MISSING and "NaN" in why


def test_normalize_name() -> None:
    assert compare.normalize_name("Normalized theoretical bound") == "normalized_theoretical_bound"
    assert compare.normalize_name(" LeNet-5 ") == "lenet_5"


def test_reasons_for_combines_context_notes_and_findings() -> None:
    reasons = compare.reasons_for("table_5_1", {"table_5_1": ["divided by 32*32"]},
                                  {"table_5_1": ["pooling bound is loose"]}, ["smoke run"])
    assert reasons == ["smoke run", "thesis note: divided by 32*32", "finding: pooling bound is loose"]


# ------------------------------------------------------------------------------------------------
# catalog and sources
# ------------------------------------------------------------------------------------------------


def test_catalog_accounts_for_every_published_value() -> None:
    paper = sources.load_paper_values(PAPER)
    covered = {key for item in catalog.CATALOG for key in item.paper_keys}
    assert set(paper) <= covered, f"published values no thesis item compares: {sorted(set(paper) - covered)}"
    assert set(comparisons.COMPARERS) <= set(catalog.BY_KEY)
    labels = [item.label for item in catalog.CATALOG]
    assert len(labels) == len(set(labels))
    # every table and every figure of the thesis's lists (Tables 3.1-5.3, Figures 1.1-5.13)
    tables = {"3.1", "4.1", "4.2", "4.3", "5.1", "5.2", "5.3"}
    figures = {"1.1", "2.1", "2.2", "2.3", "2.4", "2.5", "3.1", "3.2", "4.1", "4.2", "4.3"} | {
        f"5.{i}" for i in range(1, 14)}
    assert {f"Table {t}" for t in tables} | {f"Figure {f}" for f in figures} <= set(labels)


def test_reference_copy_keeps_the_published_values_and_notes() -> None:
    text = PAPER.read_text()
    assert "note:" in text and "# Published numbers" in text
    shared = ROOT.parent / "shared" / "reference" / "paper_values.yaml"
    if shared.exists():  # the working copy must not drift from the source it was copied from
        assert yaml.safe_load(shared.read_text()) == yaml.safe_load(text)


def test_paper_values_keep_the_column_named_no() -> None:
    # YAML 1.1 would read the column "no" of Tables 3.1 and 4.2 as False
    paper = sources.load_paper_values(PAPER)
    assert paper["table_3_1"]["columns"][0] == "no" and paper["table_4_2"]["columns"][0] == "no"
    assert paper["table_4_1"]["relu"]["second"] == 0.0


def test_published_block_keeps_comments() -> None:
    text = PAPER.read_text()
    block = sources.published_block(text, "table_5_1")
    assert block.startswith("table_5_1:") and "CIFAR-NIN" in block and "note:" in block
    assert "table_5_2" not in block
    assert sources.published_block(text, "no_such_key") == ""


def test_notes_by_item() -> None:
    notes = sources.notes_by_item(sources.load_paper_values(PAPER))
    assert any("32*32" in n for n in notes["table_5_1"])
    assert any("garbled" in n for n in notes["table_4_2"])
    assert any("bird" in n for n in notes["section_5_3_1"])
    assert notes["table_3_1"] == []


FINDINGS = """# Findings of the bounds engine

An introduction that names Table 5.3 but is no finding.

## Summary
| Table 5.1 | everything |

## F1. Max pooling
- The bound for max pooling in Section 5.2.2 is looser than needed. It affects Table 5.1.
  A second line of the same item.
- Table 4.12 does not exist; a word boundary keeps it apart from its shorter namesake.

## F2. Tanh constant
The second-derivative constant of tanh is 4/(3*sqrt 3), see Table 4.1.

```
## not a heading: code mentioning Table 3.1
```
"""


def test_split_findings_into_sections_and_file_them_under_items() -> None:
    findings = sources.split_findings(FINDINGS)
    assert [(f.heading, f.overview) for f in findings] == [
        ("Findings of the bounds engine", True), ("Summary", True), ("F1. Max pooling", False),
        ("F2. Tanh constant", False)]
    assert "second line" in findings[2].text and "code mentioning" in findings[3].text
    by_item = sources.findings_by_item(findings)
    assert [f.heading for f in by_item["table_5_1"]] == ["F1. Max pooling"]  # not the summary table
    assert by_item["table_5_3"] == []  # only the preamble names it
    assert [f.heading for f in by_item["table_4_1"]] == ["F2. Tanh constant"]  # 4.12 does not match 4.1
    assert [f.heading for f in by_item["table_3_1"]] == ["F2. Tanh constant"]  # named in its code block
    assert findings[2].summary == "F1. Max pooling"


def test_findings_without_sections_are_split_into_blocks() -> None:
    findings = sources.split_findings("# Title\n\n- Table 5.2 uses bisection.\n  More.\n- Another point.\n\nA paragraph.\n")
    assert [f.text.splitlines()[0] for f in findings] == ["- Table 5.2 uses bisection.", "- Another point.",
                                                           "A paragraph."]
    assert findings[0].summary == "Table 5.2 uses bisection."


def _record(rule: str, inputs: list[str], *, seed: int = 7, runtime: float = 1.0, finished: str = "t") -> dict:
    return {"rule": rule, "wildcards": {}, "inputs": inputs, "params": {"seed": seed, "settings": {"k": rule}},
            "seed": seed, "device": "cpu", "device_name": "x86_64", "threads": 1, "runtime_s": runtime,
            "finished_at": finished, "git_commit": "abc123", "python": "3.11", "packages": {"torch": "2"}}


def _write_provenance(root: Path, artifact: str, record: dict) -> None:
    path = sources.provenance_file(root, artifact)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**record, "output": artifact}))


def test_lineage_follows_inputs_and_dedups_multi_output_jobs(tmp_path: Path) -> None:
    _write_provenance(tmp_path, "results/data/mnist.pt", _record("prepare", ["resources/mnist.gz"], finished="a"))
    train = _record("train", ["results/data/mnist.pt"], runtime=10, finished="b")
    _write_provenance(tmp_path, "results/models/m.pt", train)
    _write_provenance(tmp_path, "results/models/m.metrics.json", train)
    _write_provenance(tmp_path, "figures/t.csv", _record(
        "table", ["results/models/m.pt", "results/models/m.metrics.json", "results/data/mnist.pt"], finished="c"))
    jobs, unrecorded = sources.lineage(tmp_path, "figures/t.csv")
    assert [j["rule"] for j in jobs] == ["table", "train", "prepare"]
    assert unrecorded == ["resources/mnist.gz"]
    summary = sources.summarize_lineage(jobs)
    assert summary["jobs"] == 3 and summary["runtime_s"] == 12.0 and summary["seeds"] == [7]


# ------------------------------------------------------------------------------------------------
# build + html on fabricated artifacts
# ------------------------------------------------------------------------------------------------


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    from io import BytesIO

    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=20)
    plt.close(fig)
    return buf.getvalue()


@pytest.fixture
def fabricated(tmp_path: Path) -> Path:
    """A results root with Table 5.2 (LeNet-5 reproduced, CIFAR-NIN off), Figure 5.11 and provenance."""
    figures = tmp_path / "figures"
    figures.mkdir()
    paper = sources.load_paper_values(PAPER)["table_5_2"]
    rows = []
    for network, *values in paper["rows"]:
        scale = 1.0 if network == "LeNet-5" else 3.0
        rows.append({"network": network, **{c: v * scale for c, v in zip(paper["columns"][1:], values)},
                     "min_perturbation_norm": 0.0182 if network == "LeNet-5" else 5.0, "n_flipped": 10})
    pd.DataFrame(rows).to_csv(figures / "table_5_2.csv", index=False)
    for suffix in ("md", "tex"):
        (figures / f"table_5_2.{suffix}").write_text("table")
    (figures / "figure_5_11.png").write_bytes(_png())
    (figures / "figure_5_11.pdf").write_bytes(b"%PDF-1.4")
    (figures / "extra.csv").write_text("a\n1\n")
    _write_provenance(tmp_path, "results/attacks/lenet5.csv", _record("ch5_attack", [], runtime=5, finished="a"))
    for artifact in ("figures/table_5_2.csv", "figures/table_5_2.md", "figures/table_5_2.tex"):
        _write_provenance(tmp_path, artifact, _record("ch5_table_5_2", ["results/attacks/lenet5.csv"], finished="b"))
    for artifact in ("figures/figure_5_11.png", "figures/figure_5_11.pdf"):
        _write_provenance(tmp_path, artifact, _record("ch5_figure_5_11", [], finished="c"))
    (tmp_path / "findings.md").write_text("# Findings\n\n## Epsilon search\n- Table 5.2 epsilons use bisection to 1e-4.\n")
    return tmp_path


def _model(root: Path, synthetic: bool = False) -> build.ReportModel:
    return build.build_model(root, paper_values_path=PAPER, findings_path=root / "findings.md", settings=SETTINGS,
                             run={"synthetic": synthetic, "seed": 7}, artifacts=["figures/extra.csv"],
                             items=[catalog.BY_KEY[k] for k in ("table_5_2", "figure_5_11", "table_5_1", "figure_2_2")])


def test_the_protocol_studys_best_reading_is_each_numbers_second_verdict(fabricated: Path) -> None:
    """Where the study has a number, the report shows its verdict under the best reading beside the
    stated protocol's (issue 13, section 3); a number the study lacks keeps one verdict."""
    reading = "M = 1; 6 halvings, upper; over flipped; bound in scaled"
    best = pd.DataFrame({"item": ["table_5_2"], "quantity": ["CIFAR-NIN / mean"], "thesis": [0.0],
                         "stated_value": [0.0], "stated_verdict": [SAME_ORDER], "best_reading": [reading],
                         "best_value": [0.0061], "best_verdict": [REPRODUCED]})
    plain = _model(fabricated)
    model = build.build_model(fabricated, paper_values_path=PAPER, findings_path=fabricated / "findings.md",
                              settings=SETTINGS, run={"seed": 7}, items=[catalog.BY_KEY["table_5_2"]],
                              best_reading=best)
    t52 = {c.quantity: c for c in model.items[0].comparisons}
    assert t52["CIFAR-NIN / mean"].verdict == SAME_ORDER  # the stated verdict stays first
    assert (t52["CIFAR-NIN / mean"].best_reading, t52["CIFAR-NIN / mean"].best_reading_verdict) == (reading, REPRODUCED)
    assert t52["LeNet-5 / mean"].best_reading_verdict == "" and t52["LeNet-5 / mean"].best_reading_value is None
    assert model.best_reading == reading and plain.best_reading == ""
    stated, second = model.tally, model.best_reading_tally
    assert second[REPRODUCED] == stated[REPRODUCED] + 1 and second[SAME_ORDER] == stated[SAME_ORDER] - 1
    row = build.comparisons_frame(model).set_index("quantity").loc["CIFAR-NIN / mean"]
    assert (row["best_reading"], row["best_reading_ours"], row["best_reading_verdict"]) == (reading, 0.0061, REPRODUCED)
    page, plain_page = render_html(model), render_html(plain)
    assert "best reading: 0.0061" in page and "Under the protocol study" in page and reading in page
    assert "best reading:" not in plain_page and "Under the protocol study" not in plain_page


def test_build_model_verdicts_reasons_and_lineage(fabricated: Path) -> None:
    model = _model(fabricated)
    items = {r.item.key: r for r in model.items}
    t52 = {c.quantity: c for c in items["table_5_2"].comparisons}
    assert t52["LeNet-5 / mean"].verdict == REPRODUCED
    assert t52["CIFAR-NIN / mean"].verdict == SAME_ORDER  # three times the published value
    assert t52["LeNet-5 / smallest perturbation L2 norm"].verdict == REPRODUCED
    assert t52["CIFAR-NIN / smallest perturbation L2 norm"].verdict == DIFFERS  # 5.0 vs 0.0671: 1.9 orders apart
    assert any(r.startswith("finding: Epsilon search") for r in t52["LeNet-5 / mean"].reasons)
    assert items["table_5_2"].verdict == DIFFERS
    assert items["table_5_1"].verdict == MISSING
    assert any("figures/table_5_1.csv is missing" in p for p in items["table_5_1"].problems)
    assert items["figure_2_2"].verdict == NOT_COMPARED and not items["figure_2_2"].artifacts
    csv = items["table_5_2"].artifacts[0]
    assert csv.exists and [j["rule"] for j in csv.lineage] == ["ch5_table_5_2", "ch5_attack"]
    assert csv.summary["runtime_s"] == 6.0
    assert [a.path for a in model.other_artifacts] == ["figures/extra.csv"]
    frame = build.comparisons_frame(model)
    assert {"item", "quantity", "thesis", "ours", "difference", "ratio", "verdict", "reasons"} <= set(frame.columns)


def test_html_is_self_contained_and_shows_everything(fabricated: Path) -> None:
    model = _model(fabricated, synthetic=True)
    page = render_html(model)
    # self-contained: no external resources
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    # the figure is embedded as a base64 PNG that decodes to the original bytes
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match and base64.b64decode(match.group(1)) == (fabricated / "figures/figure_5_11.png").read_bytes()
    # published value, ours, verdicts, reasons
    assert "26.72" in page and "reproduced" in page and "same order of magnitude" in page
    assert "synthetic" in page  # the smoke-run banner
    assert "32*32" in page  # the thesis note on Table 5.1 is cited
    assert "Epsilon search" in page  # the finding appears in the appendix and in the reasons
    # loud placeholder for a missing artifact
    assert "MISSING ARTIFACT" in page and "figures/table_5_1.csv" in page
    # provenance: config values, seed, device, package versions, commit, runtime
    for needle in ("config values (params)", "&quot;k&quot;: &quot;ch5_table_5_2&quot;", "abc123", "torch 2",
                   "1.00 s (this job)", "upstream job(s)"):
        assert needle in page, needle
    # every catalogue label of the model has an anchor in the overview
    for item in model.items:
        assert f'href="#{item.item.anchor}"' in page


def test_html_flags_an_artifact_without_provenance(fabricated: Path) -> None:
    sources.provenance_file(fabricated, "figures/figure_5_11.png").unlink()
    model = _model(fabricated)
    assert any("figure_5_11.png has no provenance record" in p for p in model.problems)
    assert "No provenance record" in render_html(model)


def test_write_report_writes_atomically(fabricated: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    build.write_report(out, root=fabricated, paper_values_path=PAPER, findings_path=None, settings=SETTINGS,
                       items=[catalog.BY_KEY["table_5_2"]])
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "No findings document" in text
    assert not list(out.parent.glob(".*.tmp"))


def test_markdown_subset() -> None:
    html = markdown("# T\n\nSome `code` and **bold**.\n\n- a\n  continued\n- b\n\n```\nx < y\n```\n")
    assert "<h3>T</h3>" in html and "<code>code</code>" in html and "<strong>bold</strong>" in html
    assert "<li>a continued</li>" in html and "<pre>x &lt; y</pre>" in html
    table = markdown("| Rule | Status |\n|---|---|\n| conv | **false** |\n")
    assert table == "<table><tr><th>Rule</th><th>Status</th></tr><tr><td>conv</td><td><strong>false</strong></td></tr></table>"


def test_gallery_files_by_chapter(fabricated: Path, tmp_path: Path) -> None:
    out = tmp_path / "gallery"
    written = gallery.build_gallery([fabricated / "figures/table_5_2.csv", fabricated / "figures/figure_5_11.png"], out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == ["chapter5/figure_5_11.png", "chapter5/table_5_2.csv"]
    assert (out / "chapter5/table_5_2.csv").read_bytes() == (fabricated / "figures/table_5_2.csv").read_bytes()
    with pytest.raises(KeyError):
        gallery.gallery_name("figures/unknown.png")
    assert catalog.gallery_sources(["figures/table_5_2.csv", "figures/figure_5_11.png", "figures/x.png"]) == [
        "figures/table_5_2.csv", "figures/figure_5_11.png"]  # catalogue order


def test_report_inputs_excludes_the_reports_own_outputs() -> None:
    targets = ["figures/a.csv", "figures/report.html", "figures/a.csv", "results/report/gallery"]
    assert catalog.report_inputs(targets, exclude={"figures/report.html", "results/report/gallery"}) == ["figures/a.csv"]


# ------------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------------


def _schema() -> dict:
    return yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


@pytest.mark.parametrize("config_file", ["config/config.yaml", "config/smoke.yaml"])
def test_report_config_is_valid_and_usable(config_file: str) -> None:
    config = yaml.safe_load((ROOT / config_file).read_text())
    jsonschema.validate(config["report"], _schema()["properties"]["report"])
    for name in ("exact", "statistical", "approximate"):
        Tolerance.from_config(config["report"], name)


@pytest.mark.parametrize("bad", [
    {"tolerances": {**SETTINGS["tolerances"], "statistical": {"rel": -0.1, "abs": 0.0, "printed_precision": True}}},
    {"tolerances": {**SETTINGS["tolerances"], "loose": {"rel": 0.5, "abs": 0.0, "printed_precision": False}}},
    {"order_of_magnitude": 0},
])
def test_report_schema_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**SETTINGS, **bad}, _schema()["properties"]["report"])


# ------------------------------------------------------------------------------------------------
# the workflow knows every item; the README lists every target
# ------------------------------------------------------------------------------------------------


@pytest.mark.workflow
def test_every_thesis_item_has_a_rule() -> None:
    """A dry run asking for every artifact of the catalogue: fails (MissingRuleException) while a
    chapter rule for some item does not exist yet."""
    targets = catalog.catalog_targets() + ["figures/report.html"]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                           "config/smoke.yaml", "--directory", str(ROOT), "--quiet=rules", *targets],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    import smoke_support

    return smoke_support.smoke_run(tmp_path_factory)


@pytest.mark.workflow
@pytest.mark.slow
def test_smoke_report_accounts_for_every_item(smoke) -> None:
    """The report of the shared smoke run: every artifact present, every figure embedded, every
    published number given a verdict, no comparer failing, nothing loaded from outside the file."""
    page = (smoke.path / "figures" / "report.html").read_text()
    assert "MISSING ARTIFACT" not in page
    assert "comparing failed" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
    figures = [item for item in catalog.generated_items() if item.kind == "figure"]
    # plus one sandwich figure per network in the "Beyond the thesis" section
    sandwiches = sorted((smoke.path / "results" / "sandwich").glob("*.csv"))
    assert sandwiches
    assert page.count('src="data:image/png;base64,') == len(figures) + len(sandwiches)
    assert page.count('alt="sandwich of ') == len(sandwiches)
    verdicts = pd.read_csv(smoke.path / "results" / "report" / "verdicts.csv")
    assert set(comparisons.COMPARERS) <= set(verdicts["item"])
    assert set(verdicts["verdict"]) <= set(compare.VERDICTS)
    findings_doc = smoke.path / "docs" / "findings.md"
    if findings_doc.exists():  # every finding is shown, and cited by at least one item
        from advbounds.report.html import inline_markdown

        findings = [f for f in sources.split_findings(findings_doc.read_text()) if not f.overview]
        # headings are shown with their inline markdown (code, emphasis) rendered
        missing = [f.heading for f in findings if f.heading and inline_markdown(f.heading) not in page]
        assert not missing, missing
        assert "finding: " in " ".join(verdicts["reasons"].dropna())


@pytest.mark.workflow
@pytest.mark.slow
def test_the_documented_publish_command_rebuilds_a_partial_report_and_links_its_figures(smoke, tmp_path) -> None:
    """docs/results/README.md's command, on a copy of the smoke run: the page is rebuilt with the
    protocol study's second verdicts and its verdicts CSV, and the snapshot's page links every
    figure it embeds to the snapshot's PNG instead of carrying it twice."""
    import shutil

    from advbounds.report import publish

    run = tmp_path / "run"
    shutil.copytree(smoke.path, run, ignore=shutil.ignore_patterns(".snakemake", ".venv", "logs"))
    (run / "figures" / "report.html").unlink()
    (run / catalog.REPORT_VERDICTS).unlink()
    publish.main([str(run), str(tmp_path / "snapshot"), "--partial-report", "--note", "smoke"])
    snapshot = tmp_path / "snapshot"
    page = (snapshot / "figures" / "report.html").read_text()
    assert "data:image/png" not in page
    linked = set(re.findall(r'src="([^"]+\.png)"', page))
    assert linked and all((snapshot / "figures" / name).exists() for name in linked)
    verdicts = pd.read_csv(snapshot / catalog.REPORT_VERDICTS)
    assert verdicts["best_reading_verdict"].notna().any()
    assert "no provenance record" not in page


@pytest.mark.workflow
def test_readme_table_lists_every_target() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [item.target for item in catalog.generated_items() if item.target not in readme]
    assert "figures/report.html" in readme and "docs/screenshot_report.png" in readme
    assert not missing, f"README table lacks {missing}"


# ------------------------------------------------------------------------------------------------
# explore.py (the notebooks' helpers)
# ------------------------------------------------------------------------------------------------


def test_results_root_from_env_or_snakefile(tmp_path: Path, monkeypatch) -> None:
    from advbounds.report import explore

    monkeypatch.delenv(explore.ENV_VAR, raising=False)
    assert explore.results_root(ROOT / "notebooks") == ROOT
    monkeypatch.setenv(explore.ENV_VAR, str(tmp_path))
    assert explore.results_root() == tmp_path.resolve()
    monkeypatch.setenv(explore.ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        explore.results_root()


def test_explore_loads_slices_and_names_the_missing_target(fabricated: Path) -> None:
    from advbounds.report import explore

    attacks = fabricated / "results" / "attacks"
    attacks.mkdir(parents=True)
    pd.DataFrame({"sample": [0, 1, 2, 3], "true_label": [0, 0, 1, 1], "eps": [3.0, 1.0, 2.0, float("nan")]}).to_csv(
        attacks / "lenet5.csv", index=False)
    pd.DataFrame({"sample": [0, 1], "true_label": [1, 1], "eps": [9.0, 8.0]}).to_csv(attacks / "cifar_nin.csv",
                                                                                  index=False)
    samples = explore.read_csvs(fabricated, "results/attacks/*.csv", label="model")
    assert list(samples.columns[:2]) == ["model", "sample"] and len(samples) == 6
    smallest = explore.smallest(samples, "eps", n=1, by="model")
    assert smallest[["model", "eps"]].values.tolist() == [["cifar_nin", 8.0], ["lenet5", 1.0]]
    assert explore.smallest(samples, "eps", n=2)["eps"].tolist() == [1.0, 2.0]
    summary = explore.per_class_summary(samples[samples.model == "lenet5"], "true_label", ["eps"])
    assert summary["eps_min"].tolist() == [1.0, 2.0] and summary["samples"].tolist() == [2, 2]
    assert explore.table(fabricated, "table_5_2").shape[0] == 2
    with pytest.raises(FileNotFoundError, match="snakemake --cores all figures/table_5_1.csv"):
        explore.table(fabricated, "table_5_1")
    prov = explore.provenance_table(fabricated, ["figures/table_5_2.csv"])
    assert prov.loc[0, "rule"] == "ch5_table_5_2" and prov.loc[0, "seed"] == 7
    assert "table_5_2" in explore.chapter_items(5) and "figure_1_1" not in explore.chapter_items(1)
    with pytest.raises(FileNotFoundError):
        explore.read_csvs(fabricated, "results/none/*.csv")


# ------------------------------------------------------------------------------------------------
# comparisons.py: the item-specific comparers
# ------------------------------------------------------------------------------------------------


def _ctx(root: Path) -> comparisons.Context:
    return comparisons.Context(root=root, paper=sources.load_paper_values(PAPER), settings=SETTINGS)


def test_table_4_1_uses_our_computed_columns_never_the_copied_thesis_column(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    pd.DataFrame([
        {"Activation": "sigm", "First-order (numeric)": 0.25, "First-order (thesis)": 0.25,
         "Second-order (numeric)": 0.0962250449, "Second-order (thesis)": 0.0962250449, "Second-order (used)": 0.0962},
        {"Activation": "tanh", "First-order (numeric)": 1.0, "First-order (thesis)": 1.0,
         "Second-order (numeric)": 0.5, "Second-order (thesis)": 0.7698003589, "Second-order (used)": 0.7698},
    ]).to_csv(tmp_path / "figures/table_4_1.csv", index=False)
    by = {c.quantity: c for c in comparisons.compare_table_4_1(_ctx(tmp_path))}
    assert by["sigmoid / second"].verdict == REPRODUCED
    assert by["tanh / second"].verdict == SAME_ORDER and by["tanh / second"].reproduced == 0.5
    assert by["relu / first"].verdict == MISSING  # no relu row
    assert "softplus / first" in by


def test_section_4_3_2_reads_the_accuracy_table(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    pd.DataFrame({"Dataset": ["Iris", "Wine", "Spambase"], "Test accuracy": [1.0, 0.8, 0.93]}).to_csv(
        tmp_path / "figures/section_4_3_2.csv", index=False)
    by = {c.quantity: c.verdict for c in comparisons.compare_section_4_3_2(_ctx(tmp_path))}
    assert by == {"iris MLP test accuracy": REPRODUCED, "wine MLP test accuracy": SAME_ORDER,
                  "spambase MLP test accuracy": REPRODUCED}


def test_figure_5_12_values_and_a_curve_that_stops_early(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    n = list(range(0, 7))
    pd.DataFrame({"n": n, "analytic_gain": [0.9 ** -k for k in n], "ratio_median": [1.0] * 7}).to_csv(
        tmp_path / "figures/figure_5_12.csv", index=False)
    _write_provenance(tmp_path, "figures/figure_5_12.png",
                      {**_record("ch5_figure_5_12", []), "params": {"settings": {"epsilon": 0.1, "max_n": 6}}})
    by = {c.quantity: c for c in comparisons.compare_figure_5_12(_ctx(tmp_path))}
    assert by["parameter epsilon"].verdict == REPRODUCED
    assert by["(1 - epsilon)^-n at n = 4"].verdict == REPRODUCED  # 1.52416 vs the printed 1.524
    assert by["(1 - epsilon)^-n at n = 7"].verdict == NOT_COMPARED  # the smoke curve stops at 6
    assert "up to 6" in by["(1 - epsilon)^-n at n = 7"].reasons[0]
    assert by["measured bound ratio (median) at n = 4"].verdict == SAME_ORDER


def test_figure_5_13_parameters_come_from_the_provenance_record(tmp_path: Path) -> None:
    _write_provenance(tmp_path, "figures/figure_5_13.png", {**_record("ch5_figure_5_13", []), "params": {
        "settings": {"alpha": 0.01, "delta": 0.2, "kappa_L": 2.0}}})
    by = {c.quantity: c.verdict for c in comparisons.compare_figure_5_13(_ctx(tmp_path))}
    assert by == {"parameter alpha": REPRODUCED, "parameter delta": SAME_ORDER, "parameter kappa_L": REPRODUCED}
    assert comparisons.compare_figure_5_13(_ctx(tmp_path / "none"))[0].verdict == MISSING


def test_a_failing_comparer_is_reported_not_swallowed(monkeypatch, tmp_path: Path) -> None:
    def boom(ctx):
        raise ValueError("unexpected column")

    monkeypatch.setitem(comparisons.COMPARERS, "table_3_1", boom)
    [row] = comparisons.compare_item("table_3_1", _ctx(tmp_path))
    assert row.verdict == MISSING and "comparing failed: ValueError: unexpected column" in row.reasons[0]


def test_section_5_3_1_compares_both_accuracies_and_names_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "results/models").mkdir(parents=True)
    ModelMetrics(train_accuracy=0.99, val_accuracy=None, test_accuracy=0.9846, final_loss=0.05, loss_curve=[],
                 iterations=10, epochs=1.0, resumed_from=0, wall_time_s=1.0, device="cpu", seed=0, n_train=10,
                 settings={}).to_json(tmp_path / "results/models/lenet5.metrics.json")
    by = {c.quantity: c for c in comparisons.compare_section_5_3_1(_ctx(tmp_path))}
    lenet = by["LeNet-5 test accuracy (thesis: above)"]
    assert lenet.reproduced == 0.9846 and lenet.published == 0.99 and lenet.verdict != MISSING
    nin = by["CIFAR-NIN test accuracy"]
    assert nin.verdict == MISSING and "results/models/cifar_nin.metrics.json" in nin.reasons[0]


def test_a_number_the_run_could_not_compute_is_a_warning_and_a_missing_file_an_error(fabricated: Path, caplog) -> None:
    """An expected NaN (no sample to take a statistic over) must not be logged at ERROR level;
    an artifact the run should have made and did not is."""
    table = pd.read_csv(fabricated / "figures/table_5_2.csv")
    table.iloc[0, 1] = float("nan")
    table.to_csv(fabricated / "figures/table_5_2.csv", index=False)
    with caplog.at_level("WARNING", logger="advbounds.report.build"):
        _model(fabricated)
    nan_records = [r for r in caplog.records if "NaN" in r.getMessage()]
    assert nan_records and all(r.levelname == "WARNING" for r in nan_records)
    missing = [r for r in caplog.records if "is missing" in r.getMessage()]  # Table 5.1 is not in the root
    assert missing and all(r.levelname == "ERROR" for r in missing)
    # the sandwich section is absent when the run wrote no sandwich
    assert _model(fabricated).sandwich is None


# ------------------------------------------------------------------------------------------------
# verdict_table.py: figures/comparison_chapters34.* from the report's comparisons
# ------------------------------------------------------------------------------------------------

# the bare column name `no` is the boolean False in YAML 1.1: the report's loader must keep it a name
CHAPTERS34_PAPER = """
table_3_1: {columns: [no, mean, median, std], rows: [[1, 1.0, 1.0, 1.0]]}
table_4_2: {columns: [no, mean, median, std], rows: [[1, 0.5, 0.5, 0.5]]}
table_4_3: {columns: [dataset, mean, median, std, min, max], rows: [[iris, 1, 1, 1, 1, 1]]}
trained_mlps: {iris: {hidden: [5], test_accuracy: 1.0}}
"""


def _chapters34_root(tmp_path: Path) -> Path:
    figures = tmp_path / "figures"
    figures.mkdir()
    pd.DataFrame({"No.": [1], "Mean": [0.1], "Median": [1.1], "Std": [1.0]}).to_csv(figures / "table_3_1.csv",
                                                                                     index=False)
    pd.DataFrame({"No.": [1], "Mean": [0.5], "Median": [0.5], "Std": [0.5], "Ref mean": [0.6],
                  "Ref median": [0.5], "Ref std": [0.5]}).to_csv(figures / "table_4_2.csv", index=False)
    pd.DataFrame({"Dataset": ["Iris"], "Mean": [1.0], "Median": [1.0], "Std": [1.0], "Min": [1.0],
                  "Max": [2.0]}).to_csv(figures / "table_4_3.csv", index=False)
    pd.DataFrame({"Dataset": ["Iris"], "Test accuracy": [0.9]}).to_csv(figures / "section_4_3_2.csv", index=False)
    (tmp_path / "paper_values.yaml").write_text(CHAPTERS34_PAPER)
    return tmp_path


def test_verdict_table_judges_with_the_configured_tolerances_and_the_reference_m(tmp_path: Path) -> None:
    from advbounds.report import verdict_table

    root = _chapters34_root(tmp_path)
    paper = sources.load_paper_values(root / "paper_values.yaml")
    ctx = comparisons.Context(root=root, paper=paper, settings=SETTINGS)
    keys = catalog.EXTRA_BY_KEY["comparison_chapters34"].compares
    table = verdict_table.verdict_table(ctx, keys)
    assert list(table.columns) == list(verdict_table.COLUMNS)
    assert len(table) == 3 + 3 + 5 + 1
    by = table.set_index(["Item", "Quantity"])
    assert by.loc[("Table 3.1", "1 / mean"), "Rel. diff"] == pytest.approx(-0.9)
    assert by.loc[("Table 3.1", "1 / mean"), "Verdict"] == SAME_ORDER  # a tenth: outside the 10 %
    assert by.loc[("Table 3.1", "1 / median"), "Verdict"] == REPRODUCED  # 1.1 vs 1.0: within the 10 %
    assert by.loc[("Table 3.1", "1 / mean"), "Verdict (ref M)"] == ""  # Table 3.1 has no reference M
    assert math.isnan(by.loc[("Table 3.1", "1 / mean"), "Ours (ref M)"])
    assert by.loc[("Table 4.2", "1 / mean"), "Rel. diff (ref M)"] == pytest.approx(0.2)
    assert by.loc[("Table 4.2", "1 / mean"), "Ours (ref M)"] == 0.6
    assert by.loc[("Table 4.2", "1 / mean"), "Verdict (ref M)"] == SAME_ORDER
    assert by.loc[("Table 4.2", "1 / median"), "Verdict (ref M)"] == REPRODUCED
    assert by.loc[("Table 4.3", "iris / max"), "Verdict"] == SAME_ORDER  # twice the published value
    assert by.loc[("Section 4.3.2", "iris MLP test accuracy"), "Ours"] == 0.9
    assert set(table["Tolerance"]) == {Tolerance.from_config(SETTINGS, "statistical").describe()}
    # a published zero has no relative difference
    assert math.isnan(verdict_table.relative_difference(compare_value("t", "q", 1.0, 0.0, TOL)))
    assert "Table 3.1, Table 4.2, Table 4.3, Section 4.3.2" in verdict_table.caption("comparison_chapters34")


def test_verdict_table_holds_the_reports_verdicts(tmp_path: Path) -> None:
    """The same files, the same settings: every verdict of the table is the report's."""
    from advbounds.report import verdict_table

    root = _chapters34_root(tmp_path)
    keys = catalog.EXTRA_BY_KEY["comparison_chapters34"].compares
    model = build.build_model(root, paper_values_path=root / "paper_values.yaml", findings_path=None,
                              settings=SETTINGS, items=[catalog.BY_KEY[k] for k in keys])
    report = {(catalog.BY_KEY[c.item].label, c.quantity): c.verdict for c in model.comparisons}
    ctx = comparisons.Context(root=root, paper=sources.load_paper_values(root / "paper_values.yaml"),
                              settings=SETTINGS)
    table = verdict_table.verdict_table(ctx, keys)
    assert dict(zip(zip(table["Item"], table["Quantity"]), table["Verdict"])) == report
    assert catalog.compared_files("comparison_chapters34") == [
        "figures/table_3_1.csv", "figures/table_4_2.csv", "figures/table_4_3.csv", "figures/section_4_3_2.csv"]


# ------------------------------------------------------------------------------------------------
# Table 5.1: like with like, and the unit said
# ------------------------------------------------------------------------------------------------


def _table_5_1_root(tmp_path: Path) -> Path:
    """Our Table 5.1 whose pixel-unit theoretical column holds the published number and whose
    scaled-unit column holds 1/256 of it: only a comparer of the scaled column finds them apart."""
    figures = tmp_path / "figures"
    figures.mkdir(exist_ok=True)
    paper = sources.load_paper_values(PAPER)["table_5_1"]
    rows = []
    for values in paper["rows"]:
        published = dict(zip(paper["columns"], values))
        rows.append({"network": published["network"], "input": "1x28x28",
                     "normalized_theoretical_bound_per_pixel": published["normalized_theoretical_bound"],
                     "normalized_empirical_bound_per_pixel": published["normalized_empirical_bound"],
                     "normalized_theoretical_bound_per_input": 1.0, "normalized_empirical_bound_per_input": 1.0,
                     "rate": published["rate"],
                     "normalized_theoretical_bound_per_pixel_scaled": published["normalized_theoretical_bound"] / 256})
    pd.DataFrame(rows).to_csv(figures / "table_5_1.csv", index=False)
    return tmp_path


def test_table_5_1_compares_the_theoretical_bound_in_scaled_units_and_says_so(tmp_path: Path) -> None:
    root = _table_5_1_root(tmp_path)
    by = {c.quantity: c for c in comparisons.compare_item("table_5_1", _ctx(root))}
    published = sources.load_paper_values(PAPER)["table_5_1"]["rows"][0][1]
    theoretical = by["LeNet-5 / normalized_theoretical_bound"]
    # read from the scaled column (1/256 of the published number: 2.4 orders apart), not the pixel one
    assert theoretical.reproduced == pytest.approx(published / 256)
    assert theoretical.verdict == DIFFERS
    assert theoretical.unit == ("the network's scaled input units (pixel value x 1/256), per pixel; "
                                "our column `normalized_theoretical_bound_per_pixel_scaled`")
    empirical = by["LeNet-5 / normalized_empirical_bound"]
    assert empirical.verdict == REPRODUCED
    assert empirical.unit == "pixel units ([0, 255]), per pixel; our column `normalized_empirical_bound_per_pixel`"
    assert by["LeNet-5 / rate"].unit == ""  # a fraction: no unit to say
    assert theoretical.as_row()["unit"] == theoretical.unit  # results/report/verdicts.csv says it too
    # without the scaled column the cell is missing, and the note names the column it needs
    frame = pd.read_csv(root / "figures/table_5_1.csv").drop(columns="normalized_theoretical_bound_per_pixel_scaled")
    frame.to_csv(root / "figures/table_5_1.csv", index=False)
    lacking = {c.quantity: c for c in comparisons.compare_item("table_5_1", _ctx(root))}
    assert lacking["LeNet-5 / normalized_theoretical_bound"].verdict == MISSING
    assert "normalized_theoretical_bound_per_pixel_scaled" in lacking["LeNet-5 / normalized_theoretical_bound"].unit


def test_the_report_page_says_the_unit_of_table_5_1(tmp_path: Path) -> None:
    root = _table_5_1_root(tmp_path)
    model = build.build_model(root, paper_values_path=PAPER, findings_path=None, settings=SETTINGS,
                              items=[catalog.BY_KEY["table_5_1"]])
    page = render_html(model)
    # under the number's name in its row of the comparison table, not only in a note
    rows = re.findall(r"<tr><td>LeNet-5 / (\w+)(.*?)</td>", page)
    units = dict(rows)
    assert units["normalized_theoretical_bound"] == (
        '<div class="muted">compared in the network&#x27;s scaled input units (pixel value x 1/256), per '
        "pixel; our column <code>normalized_theoretical_bound_per_pixel_scaled</code></div>")
    assert "compared in pixel units ([0, 255]), per pixel" in units["normalized_empirical_bound"]
    assert units["rate"] == ""

"""The report page's rendering (advbounds.report.html) on a hand-built model: Markdown links render
as anchors, figures without published numbers get no empty "Thesis (published)" column, a reason
shared by the rows of a comparison table is printed once, and wide tables wrap instead of scrolling.
Fast: no files, no smoke run."""

from __future__ import annotations

import re

from advbounds.report import build, catalog, sources
from advbounds.report.compare import DIFFERS, REPRODUCED, Comparison
from advbounds.report.html import CSS, frame_table, inline_markdown, markdown, render_html, table_notes

import pandas as pd

SHARED = "within tolerance (0.1 relative or printed precision)"
KNOWN = "this run uses synthetic stand-in data"


def _item(key: str, comparisons=(), known=(KNOWN,), findings=(), published_text="", table=None) -> build.ItemReport:
    return build.ItemReport(catalog.BY_KEY[key], [], list(comparisons), list(known), list(findings), published_text,
                            table=table, image_b64="iVBORw0KGgo=")


def _model(*items: build.ItemReport, paper=None, findings=(), notes=None) -> build.ReportModel:
    return build.ReportModel(list(items), [], {"tolerances": {}}, {"seed": 1}, [], list(findings),
                             "docs/findings.md" if findings else None, notes or {}, paper or {})


def _card(page: str, anchor: str) -> str:
    start = page.index(f'<div class="card" id="{anchor}">')
    end = page.find('<div class="card" id=', start + 10)
    return page[start:end if end > 0 else len(page)]


def _rows(n: int, extra=()) -> list[Comparison]:
    return [Comparison("table_5_2", f"net {i} / mean", 1.0 + i, 1.0 + i, REPRODUCED, 0.0, 1.0,
                       reasons=[SHARED, *extra, KNOWN]) for i in range(n)]


# ------------------------------------------------------------------------------------------------
# Markdown links
# ------------------------------------------------------------------------------------------------


def test_inline_markdown_renders_links_as_anchors() -> None:
    assert inline_markdown("see [F3](#f3) and `code`") == 'see <a href="#f3">F3</a> and <code>code</code>'
    assert inline_markdown("[F3](#f3) *(decision)*", links=False) == "F3 <em>(decision)</em>"
    assert inline_markdown("a <b> & c") == "a &lt;b&gt; &amp; c"


def test_no_raw_markdown_links_anywhere_on_the_page() -> None:
    finding = sources.Finding("F3. [Table 4.1](#table-4-1): the `tanh''` entry *(decision)*",
                              "The table prints half, see [the notes](#notes).", "f3")
    reason = "finding: [F3](#f3) explains the tanh entry"
    item = _item("table_5_2", _rows(2, extra=[reason]), known=[KNOWN, "thesis note: see [eq. 5.4](#eq)"],
                 findings=[finding])
    page = render_html(_model(item, findings=[finding], notes={"table_5_2": ["rounded, see [F1](#f1)"]}))
    assert "](" not in page
    assert '<a href="#f3">F3</a> explains' in page  # a reason's link
    assert '<a href="#eq">eq. 5.4</a>' in page  # a known reason's link
    assert '<a href="#f1">F1</a>' in page  # a paper_values note's link
    # the link to the finding shows its heading rendered, without a nested anchor
    assert ('<a href="#f3">F3. Table 4.1: the <code>tanh&#x27;&#x27;</code> entry <em>(decision)</em></a>'
            in page)
    assert "<em>(decision)</em>" in markdown("# F3 *(decision)*")


# ------------------------------------------------------------------------------------------------
# Figures without published numbers
# ------------------------------------------------------------------------------------------------


def test_a_figure_without_published_numbers_has_no_empty_thesis_column() -> None:
    page = render_html(_model(_item("figure_2_1", known=[])))
    card = _card(page, "figure-2-1")
    assert "figure-cols" not in card
    assert not re.search(r"<div><h4>Thesis \(published\)</h4>\s*(<p[^>]*>[^<]*</p>)?\s*</div>", card)
    assert "is a picture in the thesis" in card and "Section 2.4.2" in card
    assert 'src="data:image/png;base64,' in card


def test_a_figure_with_published_numbers_keeps_them_beside_the_picture() -> None:
    paper = {"figure_5_12": {"columns": ["n", "gain"], "rows": [[1, 1.11], [2, 1.23]]}}
    page = render_html(_model(_item("figure_5_12", known=[]), paper=paper))
    card = _card(page, "figure-5-12")
    assert "figure-cols" in card and "<h4>Thesis (published)</h4>" in card and "1.23" in card


# ------------------------------------------------------------------------------------------------
# Reasons once per table
# ------------------------------------------------------------------------------------------------


def test_table_notes_collect_known_and_shared_reasons() -> None:
    item = _item("table_5_2", _rows(3) + [Comparison("table_5_2", "odd", 1, 2, DIFFERS, reasons=["only here"])])
    assert table_notes(item) == [KNOWN, SHARED]


def test_a_reason_shared_by_every_row_is_shown_once() -> None:
    rows = _rows(4)
    rows[2] = Comparison("table_5_2", "net 2 / mean", 3.0, 9.0, DIFFERS, 6.0, 3.0,
                         reasons=["0.48 orders of magnitude apart", SHARED, KNOWN])
    card = _card(render_html(_model(_item("table_5_2", rows))), "table-5-2")
    assert card.count(SHARED) == 1 and card.count(KNOWN) == 1
    assert "0.48 orders of magnitude apart" in card  # a row's own reason stays on its row
    # the notes are numbered once, below the table, with anchors the citations point to
    assert 'id="table-5-2-note-1"' in card and 'id="table-5-2-note-2"' in card
    assert "Every row: see" in card and 'href="#table-5-2-note-1"' in card
    table = card[card.index('<table class="comparison">'):card.index("</table>", card.index('class="comparison"'))]
    assert "see <a" not in table  # cited by every row: not repeated on the rows


def test_a_reason_shared_by_some_rows_is_cited_by_number() -> None:
    rows = _rows(2) + [Comparison("table_5_2", "other", 1.0, 2.0, DIFFERS, reasons=["only here", KNOWN])]
    card = _card(render_html(_model(_item("table_5_2", rows))), "table-5-2")
    assert card.count(SHARED) == 1
    table = card[card.index('<table class="comparison">'):]
    assert table.count('href="#table-5-2-note-2"') == 2  # the two rows that give it
    assert "Every row: see" in card and "only here" in card


# ------------------------------------------------------------------------------------------------
# Wide tables fit the page
# ------------------------------------------------------------------------------------------------


def test_wide_tables_wrap_instead_of_scrolling() -> None:
    frame = pd.DataFrame([[1.5] * 12], columns=[f"a_rather_long_column_name_{i}" for i in range(12)])
    html = frame_table(frame)
    assert 'class="wide"' in html
    # long words in cells may break (headers only at spaces and after underscores); wide tables use
    # a smaller font and the full width
    assert re.search(r"(^|\n)td \{[^}]*overflow-wrap: anywhere", CSS)
    assert "a_<wbr>rather_<wbr>long" in html
    assert re.search(r"table\.wide \{[^}]*font-size: 1[01]px", CSS)
    assert re.search(r"table \{[^}]*max-width: 100%", CSS)
    assert "class=\"wide\"" not in frame_table(frame.iloc[:, :4])


def test_a_list_value_in_the_comparison_table_may_wrap() -> None:
    rows = [Comparison("table_5_2", "most common confusions", [["ship", "airplane"], ["dog", "bird"]],
                       [[9, 8, 47], [4, 8, 25]], "not compared", reasons=["a ranking"])]
    card = _card(render_html(_model(_item("table_5_2", rows))), "table-5-2")
    assert '<td class="num">[[ship' not in card and "<td>[[ship, airplane]" in card


def test_a_figure_with_only_copied_text_shows_it_open() -> None:
    text = 'figure_5_12: {epsilon: 0.1, values: {n4: 1.524}}'
    card = _card(render_html(_model(_item("figure_5_12", known=[], published_text=text))), "figure-5-12")
    assert "<details open><summary>as copied into reference/paper_values.yaml" in card and "1.524" in card

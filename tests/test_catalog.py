"""The catalog is the one home of each artifact's label, files and captions: what is derived from
it (the README's artifact table, the gallery of Snakemake's report) agrees with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from advbounds.report import catalog

REPO = Path(__file__).resolve().parents[1]


def test_the_readme_artifact_table_is_the_catalogs():
    readme = (REPO / "README.md").read_text()
    start, end = catalog.README_MARKERS
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == catalog.readme_table(), (
        "README.md's artifact table is out of date: run `python -m advbounds.report.catalog README.md`")


def test_every_generated_item_and_extra_has_a_readme_row_and_a_gallery_caption():
    table = catalog.readme_table()
    files = [f for item in catalog.generated_items() for f in item.files] + \
        [f for extra in catalog.EXTRAS for f in extra.files]
    keys = [i.key for i in catalog.generated_items()] + [e.example or e.key for e in catalog.EXTRAS]
    for key in keys:
        assert f"figures/{key}." in table, key
    captions = catalog.gallery_captions(files)
    assert set(captions) == {i.key for i in catalog.generated_items() if i.kind in ("figure", "table")} | \
        {e.example or e.key for e in catalog.EXTRAS}
    assert captions["sandwich_lenet5"].startswith("Sandwich: lenet5: ")
    assert captions["table_3_1"] == "Table 3.1: Test results on linear classifiers"


def test_compact_files_groups_suffixes_by_stem():
    assert catalog.compact_files(["figures/a.pdf", "figures/a.png", "figures/b.csv"]) == \
        "figures/a.{pdf,png}, figures/b.csv"


def test_the_reports_source_files_are_the_items_sources_of_the_trained_models():
    config = {"chapter5": {"models": {"lenet5": {}, "lenet_lrn1": {}}, "networks": ["lenet5"],
                           "lrn_networks": ["lenet_lrn1"]}}
    assert catalog.source_files(config) == [
        "results/attacks/lenet5.csv", "results/models/lenet5.metrics.json",
        "results/sandwich/lenet5.csv", "results/sandwich/lenet_lrn1.csv"]
    both = {"chapter5": {"models": {"lenet5": {}, "cifar_nin": {}}}}
    assert catalog.source_files(both) == list(catalog.BY_KEY["section_5_3_1"].sources)
    assert catalog.source_files({}) == []


def test_a_shown_file_is_a_tables_csv_or_a_figures_png():
    assert catalog.shown_file("table_5_2") == "figures/table_5_2.csv"
    assert catalog.shown_file("figure_5_11") == "figures/figure_5_11.png"
    assert catalog.shown_file("sandwich_lenet5") == "figures/sandwich_lenet5.png"
    assert catalog.shown_file("sandwich_summary") == "figures/sandwich_summary.csv"
    assert catalog.shown_file("section_4_3_2") == "figures/section_4_3_2.csv"
    for key in ("figure_2_2", "section_5_3_1", "nothing"):  # literature, a text item, no entry
        with pytest.raises(KeyError, match=key):
            catalog.shown_file(key)


def test_every_table_files_caption_comes_from_its_catalog_entry():
    """A table's Markdown/TeX caption is written once, in the catalog; its rule passes it to the job."""
    from advbounds.report.catalog import CATALOG, table_caption

    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    tables = [item for item in CATALOG if item.kind == "table" and item.generated]
    assert tables
    for item in tables:
        assert table_caption(item.key).startswith(f"{item.label}: "), item.key
        assert f'caption=table_caption("{item.key}")' in rules, f"no rule passes {item.key}'s caption"

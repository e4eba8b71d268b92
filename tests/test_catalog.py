"""The catalog is the one home of each artifact's label, files and captions: what is derived from
it (the README's artifact table, the gallery of Snakemake's report) agrees with it."""

from __future__ import annotations

from pathlib import Path

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

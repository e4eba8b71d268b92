"""The replication report: every thesis table and figure beside its published value.

* :mod:`.compare`: pure comparison logic (ratio, difference, verdict with tolerance, reasons);
* :mod:`.catalog`: every thesis label, its snakemake target and output files;
* :mod:`.sources`: published values, findings and provenance readers;
* :mod:`.comparisons`: which of our numbers meets which published number;
* :mod:`.build` / :mod:`.html`: assemble the report and render one self-contained HTML file;
* :mod:`.gallery`: the copies Snakemake's own ``--report`` browses.

The names below are imported lazily: the workflow imports :mod:`.catalog` while it parses, and
that must not pull in pandas.
"""

from importlib import import_module

_EXPORTS = {
    "ReportModel": "build", "build_model": "build", "comparisons_frame": "build", "write_report": "build",
    "write_report_files": "build",
    "CATALOG": "catalog", "BY_KEY": "catalog", "ThesisItem": "catalog", "catalog_targets": "catalog",
    "readme_table": "catalog",
    "Comparison": "compare", "Tolerance": "compare", "compare_value": "compare", "verdict": "compare",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"advbounds.report.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'advbounds.report' has no attribute {name!r}")

# The replication report: every thesis table and figure beside its published value.
#
#   report          -> figures/report.html (one self-contained file, images embedded as base64 PNG)
#                      and results/report/verdicts.csv (every verdict as a table, for notebooks/tests)
#   report_gallery  -> results/report/gallery/ (copies of the figure PNGs and table CSVs, flagged for
#                      Snakemake's own report: `snakemake --report figures/snakemake_report.zip`)
#
# The report's inputs are every final artifact of the other rule files (ALL_TARGETS, read lazily by
# an input function, so the order of the `include:` lines does not matter) plus the published values,
# copied into the repository (reference/paper_values.yaml) so a run never needs anything outside it.
# Logic lives in advbounds.report; the scripts are thin adapters.

from pathlib import Path

from advbounds.report.catalog import gallery_sources, report_inputs, source_files

REPORT_HTML = "figures/report.html"
REPORT_VERDICTS = "results/report/verdicts.csv"
REPORT_GALLERY = "results/report/gallery"
REPORT_OWN = {REPORT_HTML, REPORT_VERDICTS, REPORT_GALLERY}
# the bounds engineer's findings: cited by the verdicts when present (read at parse time, so adding
# the file later reruns the report through the input trigger)
REPORT_FINDINGS = ["docs/findings.md"] if Path("docs/findings.md").exists() else []

ALL_TARGETS.extend([REPORT_HTML, REPORT_GALLERY])

report: "../report/workflow.rst"


rule report:
    """figures/report.html: published values, our numbers, verdicts, reasons and provenance."""
    input:
        # every final artifact except the report's own (a lambda: ALL_TARGETS is complete only
        # once every rule file is parsed)
        artifacts=lambda wildcards: report_inputs(ALL_TARGETS, exclude=REPORT_OWN),
        # per-sample results and metrics behind the numbers the thesis states in its text
        sources=lambda wildcards: source_files(config),
        paper_values="reference/paper_values.yaml",
        findings=REPORT_FINDINGS,
    output:
        html=report(REPORT_HTML, caption="../report/report_html.rst", category="Replication report"),
        verdicts=REPORT_VERDICTS,
    log:
        "logs/report/report.log",
    params:
        **job_settings(settings=config["report"], run={"synthetic": config["synthetic"]}),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/report_html.py"


rule report_gallery:
    """Copies of the thesis figures and tables, flagged for `snakemake --report` (browsing)."""
    input:
        lambda wildcards: gallery_sources(ALL_TARGETS),
    output:
        report(
            directory(REPORT_GALLERY),
            patterns=["{chapter}/{item}.png", "{chapter}/{item}.csv"],
            caption="../report/thesis_item.rst",
            category="Thesis figures and tables",
            subcategory="{chapter}",
            labels={"item": "{item}"},
        ),
    log:
        "logs/report/report_gallery.log",
    params:
        **job_settings(),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/report_gallery.py"

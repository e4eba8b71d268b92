# The replication report: every thesis table and figure beside its published value.
#
#   report          -> figures/report.html (one self-contained file, images embedded as base64 PNG)
#                      and results/report/verdicts.csv (every verdict as a table, for notebooks/tests)
#   report_gallery  -> results/report/gallery/ (copies of the figure PNGs and table CSVs, flagged for
#                      Snakemake's own report: `snakemake --report figures/snakemake_report.zip`)
#
# The report's inputs are every final artifact of the other rule files (get_final_output(), read lazily by
# an input function, so the order of the `include:` lines does not matter) plus the published values,
# copied into the repository (reference/paper_values.yaml) so a run never needs anything outside it.
# Logic lives in advbounds.report; the scripts are thin adapters.

from pathlib import Path

from advbounds.report.catalog import (REPORT_VERDICTS, SHOWN_SUFFIX, gallery_captions, gallery_sources,
                                     report_inputs, source_files)

REPORT_OWN = {REPORT_HTML, REPORT_VERDICTS, REPORT_GALLERY}
# the bounds engineer's findings: cited by the verdicts when present (read at parse time, so adding
# the file later reruns the report through the input trigger)
REPORT_FINDINGS = ["docs/findings.md"] if Path("docs/findings.md").exists() else []


report: "../report/workflow.rst"


rule report:
    """figures/report.html: published values, our numbers, verdicts, reasons and provenance."""
    input:
        # every final artifact except the report's own (a lambda: get_final_output() is complete only
        # once every rule file is parsed)
        artifacts=lambda wildcards: report_inputs(get_final_output(), exclude=REPORT_OWN),
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
        **job_params("report_html.py", settings=config["report"],
                    run={"synthetic": config["synthetic"], "seed": config["seed"], "device": config["device"]},
                    protocol_study=config["protocol_study"]),
    threads: 1
    script:
        "../scripts/report_html.py"


rule report_gallery:
    """Copies of the thesis figures and tables, flagged for `snakemake --report` (browsing)."""
    input:
        lambda wildcards: gallery_sources(get_final_output()),
    output:
        report(
            directory(REPORT_GALLERY),
            patterns=[f"{{chapter}}/{{item}}.{suffix}" for suffix in SHOWN_SUFFIX.values()],
            caption="../report/thesis_item.rst",
            category="Thesis figures and tables",
            subcategory="{chapter}",
            labels={"item": "{item}"},
        ),
    log:
        "logs/report/report_gallery.log",
    params:
        **job_params("report_gallery.py"),
        # the thesis caption of each file, for the caption template (thesis_item.rst)
        captions=lambda wildcards: gallery_captions(get_final_output()),
    threads: 1
    script:
        "../scripts/report_gallery.py"

"""figures/report.html and results/report/verdicts.csv (rule report)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.io import write_frame
    from advbounds.report import comparisons_frame, write_report

    findings = list(job.input.findings)
    model = write_report(
        job.output.html,
        root=".",
        paper_values_path=job.input.paper_values,
        findings_path=findings[0] if findings else None,
        settings=job.settings,
        run=job.params["run"],
        artifacts=list(job.input.artifacts),
    )
    write_frame(comparisons_frame(model), job.output.verdicts)


run_job(snakemake, main)  # noqa: F821

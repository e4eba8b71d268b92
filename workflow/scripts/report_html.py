"""figures/report.html and results/report/verdicts.csv (rule report)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.report import write_report_files

    findings = list(job.input.findings)
    write_report_files(
        job.output.html,
        job.output.verdicts,
        root=".",
        paper_values_path=job.input.paper_values,
        findings_path=findings[0] if findings else None,
        settings=job.settings,
        run=job.params["run"],
        artifacts=list(job.input.artifacts),
        protocol_study=job.params["protocol_study"],
    )


run_job(snakemake, main)  # noqa: F821

"""figures/report.html and results/report/verdicts.csv (rule report)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments.protocol import read_best_reading_verdicts
    from advbounds.io import write_frame
    from advbounds.report import comparisons_frame, write_report
    from advbounds.report.catalog import shown_file

    findings = list(job.input.findings)
    # the second verdict per number, where the run made the protocol study
    study = shown_file("protocol_study")
    best_reading = read_best_reading_verdicts(study, job.params["protocol_study"]) \
        if study in job.input.artifacts else None
    model = write_report(
        job.output.html,
        root=".",
        paper_values_path=job.input.paper_values,
        findings_path=findings[0] if findings else None,
        settings=job.settings,
        run=job.params["run"],
        artifacts=list(job.input.artifacts),
        best_reading=best_reading,
    )
    write_frame(comparisons_frame(model), job.output.verdicts)


run_job(snakemake, main)  # noqa: F821

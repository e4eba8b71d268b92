"""results/report/gallery/: the thesis figures and tables for `snakemake --report` (rule report_gallery)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.report.gallery import build_gallery

    build_gallery(list(job.input), job.output[0])


run_job(snakemake, main)  # noqa: F821

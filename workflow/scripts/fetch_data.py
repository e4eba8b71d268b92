"""Get the raw files of one dataset: verified download (or pre-staged file), or a synthetic stand-in."""

from advbounds.data import fetch_raw, write_synthetic
from advbounds.jobs import run_job


def main(job):
    s, dataset = job.settings, job.params["dataset"]
    if s["synthetic"]:
        write_synthetic(dataset, s["data_dir"], seed=job.seed, sizes=s["synthetic_sizes"])
    fetch_raw(dataset, s["data_dir"], job.offline, synthetic=s["synthetic"],
              allow_partial=s["allow_partial"])


run_job(snakemake, main)

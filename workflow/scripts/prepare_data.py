"""Prepare one dataset: verified raw files -> results/data/{dataset}.pt."""

from advbounds.data import prepare_dataset
from advbounds.jobs import run_job


def main(job):
    s = job.settings
    prepare_dataset(job.wildcards["dataset"], s["data_dir"], job.output[0], seed=job.seed,
                    split=s["uci_split"], offline=job.offline, synthetic=s["synthetic"],
                    allow_partial=s["allow_partial"], image_val_fraction=s["image_val_fraction"])


run_job(snakemake, main)

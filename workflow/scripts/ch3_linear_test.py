"""One test of Table 3.1: per-sample bound, FGS and exact perturbation (rule ch3_linear_test)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import linear
    from advbounds.io import write_frame
    from advbounds.settings import SearchSettings

    s = job.settings
    frame = linear.linear_test_frame(s["spec"], number=s["number"], seed=linear.test_seed(job.seed, s["number"]),
                                     attack=SearchSettings.from_config(s["attack"]), dtype=s["dtype"], progress=True)
    write_frame(frame, job.output[0])


run_job(snakemake, main)  # noqa: F821

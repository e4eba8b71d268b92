"""The protocol study (rule protocol_study)."""

from advbounds.jobs import run_job


def main(job):
    from advbounds.experiments import protocol
    from advbounds.report.sources import load_paper_values

    s = job.settings
    files = {group: {kind: list(job.input.get(f"{group}_{kind}", [])) for kind in ("attacks", "bounds", "metrics")}
             for group in ("networks", "lrn_networks")}
    inputs = protocol.load_inputs(s, linear=job.input.linear, random_mlp=job.input.random_mlp,
                                  trained=job.input.trained, **files)
    protocol.write_study(inputs, protocol.ProtocolFamily.from_config(s["family"]),
                         load_paper_values(job.input.paper_values), s["report"], job.output)


run_job(snakemake, main)  # noqa: F821

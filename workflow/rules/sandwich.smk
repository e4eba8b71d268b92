# The robustness sandwich (beyond the thesis): per sample, every lower bound and every attack, for
# every experiment of Chapters 3-5 (advbounds.experiments.sandwich, docs/attacks.md).
#
#   per Table 3.1 / 4.2 test and trained MLP:  sandwich_chapters34 -> results/sandwich/{name}.csv,
#                                              figures/sandwich_{name}.{pdf,png}
#   per Chapter 5 network:                     ch5_sandwich        -> the same files
#   then                                       sandwich_summary    -> figures/sandwich_summary.{csv,md,tex}
#
# The experiment names come from advbounds.config (chapters34_sandwiches, sandwich_models), the one
# place that derives them from the config. Include after chapter3.smk, chapter4.smk and chapter5.smk:
# the Chapter 3-4 rule reads the per-sample files those rules write.

include: "sandwich_functions.smk"


rule sandwich_chapters34:
    """Per sample of a Table 3.1 / 4.2 test or a trained MLP: thesis bound, sound bound, certified
    radius, exact minimum (where they apply), FGS and the strong attacks."""
    input:
        unpack(sandwich34_inputs),
    output:
        table="results/sandwich/{name}.csv",
        figure=artifact_files("sandwich_{name}"),
    log:
        "logs/sandwich/{name}.log",
    benchmark:
        "logs/benchmarks/sandwich/{name}.tsv"
    wildcard_constraints:
        name="|".join(SANDWICH34) or "no_chapter34_sandwich",
    params:
        **job_params("sandwich_chapters34.py", seed=True, settings=lambda wc: chapters34_sandwich_settings(config, wc.name)),
    threads: 1
    script:
        "../scripts/sandwich_chapters34.py"


rule ch5_sandwich:
    """Per sample: thesis bound, corrected bound, certified radius, every attack and FGS."""
    input:
        bounds="results/bounds/{model}.csv",
        attacks="results/attacks/{model}.csv",
        strong="results/strong_attacks/{model}.csv",
    output:
        table="results/sandwich/{model}.csv",
        figure=artifact_files("sandwich_{model}"),
    log:
        "logs/ch5_sandwich/{model}.log",
    wildcard_constraints:
        model=CH5_MODEL_RE,
    params:
        **job_params("ch5_sandwich.py"),
    script:
        "../scripts/ch5_sandwich.py"


rule sandwich_summary:
    """One row per experiment: medians, neighbour ratios and violations of the chain."""
    input:
        sandwiches=expand("results/sandwich/{name}.csv", name=sandwich_experiments(config)),
    output:
        artifact_files("sandwich_summary"),
    log:
        "logs/sandwich_summary.log",
    params:
        **job_params("sandwich_summary.py"),
    script:
        "../scripts/sandwich_summary.py"

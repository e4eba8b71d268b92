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

SANDWICH34 = {e.name: e for e in chapters34_sandwiches(config)}


def sandwich34_inputs(wildcards):
    """The per-sample frame of the experiment (and, for a trained MLP, its model and data)."""
    experiment = SANDWICH34[wildcards.name]
    if experiment.kind == "linear":
        return {"per_sample": rules.ch3_linear_test.output[0].format(test=experiment.key)}
    if experiment.kind == "random_mlp":
        return {"per_sample": rules.ch4_random_mlp.output[0].format(test=experiment.key)}
    return {
        "per_sample": rules.ch4_evaluate.output[0].format(dataset=experiment.key),
        "model": rules.ch4_train.output.model.format(dataset=experiment.key),
        "data": rules.ch4_train.input.data.format(dataset=experiment.key),
    }


def sandwich34_settings(name):
    """The config the experiment's sandwich reads: its chapter's strong attacks, and what redraws
    (a random test) or reloads (a trained MLP) its classifiers as the chapter's rule did."""
    experiment = SANDWICH34[name]
    chapter = config[f"chapter{experiment.chapter}"]
    settings = {"kind": experiment.kind, "strong_attacks": chapter["strong_attacks"], "dtype": chapter["dtype"]}
    if experiment.kind == "linear":
        return {**settings, "number": experiment.key, "spec": chapter["tests"][experiment.key - 1]}
    if experiment.kind == "random_mlp":
        return {**settings, "number": experiment.key, "spec": chapter["random_mlp"]["tests"][experiment.key - 1],
                "activation": chapter["random_mlp"]["activation"]}
    return {**settings, "split": chapter["trained"]["split"]}


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
        **job_params("sandwich_chapters34.py", seed=True, settings=lambda wc: sandwich34_settings(wc.name)),
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

# Helper functions of workflow/rules/sandwich.smk. Snakemake's linter asks that rule files hold
# rules only, so the functions they call live here; sandwich.smk includes this file first.

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

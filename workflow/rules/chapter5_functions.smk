# Helper functions of workflow/rules/chapter5.smk. Snakemake's linter asks that rule files hold
# rules only, so the functions they call live here; chapter5.smk includes this file first.


def ch5_data(model):
    return f"results/data/{CH5['models'][model]['dataset']}.pt"


def ch5_per_model(pattern, models):
    return [pattern.format(model=m) for m in models]


def ch5_model_inputs(models, bounds=True):
    files = {
        "attacks": ch5_per_model("results/attacks/{model}.csv", models),
        "metrics": ch5_per_model("results/models/{model}.metrics.json", models),
    }
    if bounds:
        files["bounds"] = ch5_per_model("results/bounds/{model}.csv", models)
    return files


def ch5_iterative_model(wc):
    return wc.get("model") or CH5_FIG["figure_2_5"]["model"]

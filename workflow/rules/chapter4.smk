# Chapter 4: MLPs. Table 4.1 and Figure 2.1 (activations), Table 4.2 and Figure 4.1 (random MLPs),
# the trained Iris / Wine / Spambase MLPs (accuracies, Table 4.3, Figure 4.2) and Figure 4.3
# (regularization sweep, Section 4.4), plus the comparison with the published numbers of Ch. 3-4.
#
#   per test k:        ch4_random_mlp     -> results/random_mlp/test_{k}.csv
#   per data set:      ch4_train          -> results/models/mlp_{dataset}.pt, .metrics.json
#                      ch4_evaluate       -> results/mlp/{dataset}.csv
#   per data set, l:   ch4_regularization -> results/regularization/{dataset}/ell_{ell}.json
#   then tables/figures under figures/ and figures/comparison_chapters34.{csv,md,tex}.
#
# No rule declares `resources: gpu=1`: the MLPs are tiny (a GPU would not help), and the default
# profile allows one gpu=1 job at a time, which would serialize the 3 + 24 training jobs.
#
# `snakemake --cores all chapter4` builds all of it; the config slice is config["chapter4"]. Include
# after chapter3.smk (the comparison reads Table 3.1).

from advbounds.report.catalog import compared_files

CH4 = config["chapter4"]
CH4_TESTS = [str(k) for k in range(1, len(CH4["random_mlp"]["tests"]) + 1)]
CH4_DATASETS = list(CH4["trained"]["datasets"])
CH4_ELL_BY_NAME = regularization_ells(config)
CH4_ELLS = list(CH4_ELL_BY_NAME)
CH4_DATASET_RE = "|".join(CH4_DATASETS)


CH4_RANDOM_FILES = expand("results/random_mlp/test_{test}.csv", test=CH4_TESTS)
CH4_TRAINED_FILES = expand("results/mlp/{dataset}.csv", dataset=CH4_DATASETS)
CH4_METRICS_FILES = expand("results/models/mlp_{dataset}.metrics.json", dataset=CH4_DATASETS)


rule chapter4:
    """Every Chapter 4 artifact (and Figure 2.1, and the Chapter 3-4 comparison)."""
    input:
        chapter_targets(4),


rule ch4_table_4_1:
    """Table 4.1: sup |g'| and sup |g''| found numerically, beside the closed forms and the used values."""
    output:
        artifact_files("table_4_1"),
    log:
        "logs/ch4_table_4_1.log",
    params:
        **job_params("ch4_table_4_1.py", caption=table_caption("table_4_1"),
            settings={
                "activations": CH4["activations"],
                "relu_second_derivative": CH4["relu_second_derivative"],
            }
        ),
    script:
        "../scripts/ch4_table_4_1.py"


rule ch4_figure_2_1:
    """Figure 2.1: the activation functions (and their first two derivatives)."""
    output:
        artifact_files("figure_2_1"),
    log:
        "logs/ch4_figure_2_1.log",
    params:
        **job_params("ch4_figure_2_1.py", settings={"names": CH4["activations"]["names"], "plot": CH4["activations"]["plot"]}),
    script:
        "../scripts/ch4_figure_2_1.py"


rule ch4_random_mlp:
    """One test of Table 4.2: random MLPs, per-sample bound (Theorem 4.2) and FGS (Alg. 2.1)."""
    output:
        "results/random_mlp/test_{test}.csv",
    log:
        "logs/ch4_random_mlp/test_{test}.log",
    wildcard_constraints:
        test=r"\d+",
    params:
        **job_params("ch4_random_mlp.py", seed=True,
            settings=lambda wc: {
                "number": int(wc.test),
                "spec": CH4["random_mlp"]["tests"][int(wc.test) - 1],
                "activation": CH4["random_mlp"]["activation"],
                "attack": CH4["random_mlp"]["attack"],
                "reference_attack": CH4["reference_attack"],
                "relu_second_derivative": CH4["relu_second_derivative"],
                "dtype": CH4["dtype"],
            }
        ),
    threads: CH4["threads"]
    script:
        "../scripts/ch4_random_mlp.py"


rule ch4_table_4_2:
    """Table 4.2: deviation statistics of the random MLPs, flips and violations."""
    input:
        tests=CH4_RANDOM_FILES,
    output:
        artifact_files("table_4_2"),
    log:
        "logs/ch4_table_4_2.log",
    params:
        **job_params("ch4_table_4_2.py", caption=table_caption("table_4_2"), settings={"tests": CH4["random_mlp"]["tests"], "violation_atol": CH4["violation_atol"]}),
    script:
        "../scripts/ch4_table_4_2.py"


rule ch4_figure_4_1:
    """Figure 4.1: boxplots of the per-MLP average deviations per test (search M and reference M)."""
    input:
        tests=CH4_RANDOM_FILES,
    output:
        artifact_files("figure_4_1"),
    log:
        "logs/ch4_figure_4_1.log",
    params:
        **job_params("ch4_figure_4_1.py", settings={"symlog": CH4["deviation_axis_linthresh"]}),
    script:
        "../scripts/ch4_figure_4_1.py"


rule ch4_train:
    """Train the Section 4.3.2 MLP of one data set (tanh, standardized data)."""
    input:
        data="results/data/{dataset}.pt",
    output:
        model="results/models/mlp_{dataset}.pt",
        metrics="results/models/mlp_{dataset}.metrics.json",
    log:
        "logs/ch4_train/{dataset}.log",
    benchmark:
        "logs/benchmarks/ch4_train/{dataset}.tsv"
    wildcard_constraints:
        dataset=CH4_DATASET_RE,
    params:
        **job_params("ch4_train.py", seed=True, device=True, settings=lambda wc: trained_mlp_settings(config, wc.dataset)),
    threads: CH4["threads"]
    script:
        "../scripts/ch4_train.py"


rule ch4_evaluate:
    """Per-sample bound (Theorem 4.2) and minimal FGS perturbation of one trained MLP."""
    input:
        model="results/models/mlp_{dataset}.pt",
        data="results/data/{dataset}.pt",
    output:
        "results/mlp/{dataset}.csv",
    log:
        "logs/ch4_evaluate/{dataset}.log",
    wildcard_constraints:
        dataset=CH4_DATASET_RE,
    params:
        **job_params("ch4_evaluate.py",
            settings={
                "split": CH4["trained"]["split"],
                "attack": CH4["trained"]["attack"],
                "reference_attack": CH4["reference_attack"],
                "relu_second_derivative": CH4["relu_second_derivative"],
                "dtype": CH4["dtype"],
            }
        ),
    threads: CH4["threads"]
    script:
        "../scripts/ch4_evaluate.py"


rule ch4_table_4_3:
    """Table 4.3: deviation statistics of the trained MLPs, flips and violations."""
    input:
        frames=CH4_TRAINED_FILES,
    output:
        artifact_files("table_4_3"),
    log:
        "logs/ch4_table_4_3.log",
    params:
        **job_params("ch4_table_4_3.py", caption=table_caption("table_4_3"), settings={"datasets": CH4_DATASETS, "violation_atol": CH4["violation_atol"]}),
    script:
        "../scripts/ch4_table_4_3.py"


rule ch4_figure_4_2:
    """Figure 4.2: boxplots of the deviations of the trained MLPs (search M and reference M)."""
    input:
        frames=CH4_TRAINED_FILES,
    output:
        artifact_files("figure_4_2"),
    log:
        "logs/ch4_figure_4_2.log",
    params:
        **job_params("ch4_figure_4_2.py", settings={"datasets": CH4_DATASETS, "symlog": CH4["deviation_axis_linthresh"]}),
    script:
        "../scripts/ch4_figure_4_2.py"


rule ch4_accuracies:
    """Section 4.3.2: train / validation / test accuracies of the trained MLPs."""
    input:
        metrics=CH4_METRICS_FILES,
    output:
        artifact_files("section_4_3_2"),
    log:
        "logs/ch4_accuracies.log",
    params:
        **job_params("ch4_accuracies.py", caption=table_caption("section_4_3_2"),
            settings={"datasets": CH4_DATASETS,
                      "hidden": {d: CH4["trained"]["datasets"][d]["hidden"] for d in CH4_DATASETS}}
        ),
    script:
        "../scripts/ch4_accuracies.py"


rule ch4_regularization:
    """One point of Figure 4.3: train with L1 = L - l delta(h_L(x); f), measure accuracy, FGS / FGV
    error rates and minimal perturbations on the entire data set."""
    input:
        data="results/data/{dataset}.pt",
    output:
        "results/regularization/{dataset}/ell_{ell}.json",
    log:
        "logs/ch4_regularization/{dataset}_ell_{ell}.log",
    benchmark:
        "logs/benchmarks/ch4_regularization/{dataset}_ell_{ell}.tsv"
    wildcard_constraints:
        dataset=CH4_DATASET_RE,
        ell="|".join(e.replace(".", r"\.").replace("+", r"\+") for e in CH4_ELLS),
    params:
        **job_params("ch4_regularization.py", seed=True, device=True,
            settings=lambda wc: {
                **trained_mlp_settings(config, wc.dataset),
                "ell": CH4_ELL_BY_NAME[wc.ell],
                "split": CH4["regularization"]["split"],
                "attack": CH4["regularization"]["attack"],
                "relu_second_derivative": CH4["relu_second_derivative"],
                "dtype": CH4["dtype"],
            }
        ),
    threads: CH4["threads"]
    script:
        "../scripts/ch4_regularization.py"


rule ch4_figure_4_3:
    """Figure 4.3 (and its data as figures/figure_4_3.csv)."""
    input:
        points=expand("results/regularization/{dataset}/ell_{ell}.json", dataset=CH4_DATASETS, ell=CH4_ELLS),
    output:
        figure=artifact_files("figure_4_3"),
        data="figures/figure_4_3.csv",
    log:
        "logs/ch4_figure_4_3.log",
    params:
        **job_params("ch4_figure_4_3.py"),
    script:
        "../scripts/ch4_figure_4_3.py"


rule ch4_comparison:
    """Our Tables 3.1, 4.2, 4.3 and accuracies beside the published values, with the report's verdicts."""
    input:
        paper_values="reference/paper_values.yaml",
        tables=compared_files("comparison_chapters34"),
    output:
        artifact_files("comparison_chapters34"),
    log:
        "logs/ch4_comparison.log",
    params:
        **job_params("ch4_comparison.py", settings=config["report"], table="comparison_chapters34"),
    script:
        "../scripts/ch4_comparison.py"

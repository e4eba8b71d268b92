# Chapter 5: convolutional networks (LeNet-5, LeNet-LRN1/2/3, CIFAR-NIN) and Figure 2.5.
#
#   per model:  ch5_train   -> results/models/{model}.pt, results/models/{model}.metrics.json
#               ch5_bounds  -> results/bounds/{model}.csv   (per-sample bound and every kappa)
#               ch5_attack  -> results/attacks/{model}.csv  (per-sample FGS epsilon, norm, labels)
#   then tables 5.1-5.3 and figures 2.5, 5.1, 5.3, 5.8-5.13 under figures/.
#
# `snakemake --cores all chapter5` builds all of it; the config slice is config["chapter5"]. Logic lives
# in advbounds.experiments.cnn and advbounds.plotting.chapter5; the scripts are thin adapters.

CH5 = config["chapter5"]
CH5_MODELS = list(CH5["models"])
CH5_MODEL_RE = "|".join(CH5_MODELS)
CH5_FIG = CH5["figures"]


include: "chapter5_functions.smk"




rule chapter5:
    """Every Chapter 5 artifact (and Figure 2.5)."""
    input:
        chapter_targets(5),


rule ch5_train:
    """Train one Chapter 5 network (checkpointed: a killed run resumes from results/checkpoints/)."""
    input:
        data=lambda wc: ch5_data(wc.model),
    output:
        model="results/models/{model}.pt",
        metrics="results/models/{model}.metrics.json",
    log:
        "logs/ch5_train/{model}.log",
    benchmark:
        "logs/benchmarks/ch5_train/{model}.tsv"
    wildcard_constraints:
        model=CH5_MODEL_RE,
    params:
        **job_params("ch5_train.py", seed=True, device=True, settings=lambda wc: CH5["models"][wc.model]),
        checkpoint=lambda wc: f"results/checkpoints/{wc.model}.pt",
    threads: CH5["threads"]
    resources:
        gpu=1,
    script:
        "../scripts/ch5_train.py"


rule ch5_bounds:
    """Per-sample theoretical bound (Algorithm 5.1) and per-layer kappa on the whole test set."""
    input:
        model="results/models/{model}.pt",
        data=lambda wc: ch5_data(wc.model),
    output:
        "results/bounds/{model}.csv",
    log:
        "logs/ch5_bounds/{model}.log",
    benchmark:
        "logs/benchmarks/ch5_bounds/{model}.tsv"
    wildcard_constraints:
        model=CH5_MODEL_RE,
    params:
        **job_params("ch5_bounds.py", device=True, settings=CH5["bounds"]),
    threads: CH5["threads"]
    resources:
        gpu=1,
    script:
        "../scripts/ch5_bounds.py"


rule ch5_attack:
    """Per-sample minimal FGS epsilon (Algorithm 2.1) on the whole test set."""
    input:
        model="results/models/{model}.pt",
        data=lambda wc: ch5_data(wc.model),
    output:
        "results/attacks/{model}.csv",
    log:
        "logs/ch5_attack/{model}.log",
    benchmark:
        "logs/benchmarks/ch5_attack/{model}.tsv"
    wildcard_constraints:
        model=CH5_MODEL_RE,
    params:
        **job_params("ch5_attack.py", device=True, settings=CH5["attack"]),
    threads: CH5["threads"]
    resources:
        gpu=1,
    script:
        "../scripts/ch5_attack.py"


rule ch5_table_5_1:
    """Table 5.1: normalized theoretical and empirical bounds and FGS rate, both normalizations."""
    input:
        **ch5_model_inputs(CH5["networks"]),
    output:
        artifact_files("table_5_1"),
    log:
        "logs/ch5_tables/table_5_1.log",
    benchmark:
        "logs/benchmarks/ch5_tables/table_5_1.tsv"
    params:
        **job_params("ch5_tables.py", settings={"models": CH5["networks"]}, table="5_1", caption=table_caption("table_5_1")),
    script:
        "../scripts/ch5_tables.py"


rule ch5_table_5_2:
    """Table 5.2: statistics of the FGS epsilon (flipped samples)."""
    input:
        **ch5_model_inputs(CH5["networks"], bounds=False),
    output:
        artifact_files("table_5_2"),
    log:
        "logs/ch5_tables/table_5_2.log",
    benchmark:
        "logs/benchmarks/ch5_tables/table_5_2.tsv"
    params:
        **job_params("ch5_tables.py", settings={"models": CH5["networks"]}, table="5_2", caption=table_caption("table_5_2")),
    script:
        "../scripts/ch5_tables.py"


rule ch5_table_5_3:
    """Table 5.3: accuracy, epsilon statistics and rate of the LeNet-LRN networks and reference rows."""
    input:
        **ch5_model_inputs(CH5["lrn_networks"]),
    output:
        artifact_files("table_5_3"),
    log:
        "logs/ch5_tables/table_5_3.log",
    benchmark:
        "logs/benchmarks/ch5_tables/table_5_3.tsv"
    params:
        **job_params("ch5_tables.py", settings={"models": CH5["lrn_networks"]}, table="5_3", caption=table_caption("table_5_3")),
    script:
        "../scripts/ch5_tables.py"


rule ch5_figure_dataset:
    """Figures 5.1 (MNIST) and 5.3 (CIFAR-10): dataset samples."""
    input:
        data=lambda wc: {"5_1": "results/data/mnist.pt", "5_3": "results/data/cifar10.pt"}[wc.label],
    output:
        artifact_files("figure_{label}"),
    log:
        "logs/ch5_figures/figure_{label}.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_{label}.tsv"
    wildcard_constraints:
        label="5_1|5_3",
    params:
        **job_params("ch5_figure_dataset.py", seed=True, settings=CH5_FIG["dataset_samples"]),
    script:
        "../scripts/ch5_figure_dataset.py"


rule ch5_figure_examples:
    """Figures 5.8 (LeNet-5) and 5.9 (CIFAR-NIN): grids of adversarial examples."""
    input:
        model=lambda wc: f"results/models/{CH5_FIG[f'figure_{wc.label}']['model']}.pt",
        attacks=lambda wc: f"results/attacks/{CH5_FIG[f'figure_{wc.label}']['model']}.csv",
        data=lambda wc: ch5_data(CH5_FIG[f"figure_{wc.label}"]["model"]),
    output:
        artifact_files("figure_{label}"),
    log:
        "logs/ch5_figures/figure_{label}.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_{label}.tsv"
    wildcard_constraints:
        label="5_8|5_9",
    params:
        **job_params("ch5_figure_examples.py", seed=True, device=True, settings=lambda wc: example_figure_settings(config, wc.label)),
    resources:
        gpu=1,
    script:
        "../scripts/ch5_figure_examples.py"


rule ch5_figure_5_10:
    """Figure 5.10: heatmaps of original class against adversarial class, and the counts as CSV."""
    input:
        **ch5_model_inputs(CH5["networks"], bounds=False),
    output:
        artifact_files("figure_5_10"),
        counts="figures/figure_5_10_counts.csv",
    log:
        "logs/ch5_figures/figure_5_10.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_5_10.tsv"
    params:
        **job_params("ch5_figure_5_10.py", settings={"models": CH5["networks"]}),
    script:
        "../scripts/ch5_figure_5_10.py"


rule ch5_figure_5_11:
    """Figure 5.11: boxplots of the FGS epsilon per network."""
    input:
        attacks=ch5_per_model("results/attacks/{model}.csv", CH5["networks"]),
    output:
        artifact_files("figure_5_11"),
    log:
        "logs/ch5_figures/figure_5_11.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_5_11.tsv"
    params:
        **job_params("ch5_figure_5_11.py", settings={"models": CH5["networks"]}),
    script:
        "../scripts/ch5_figure_5_11.py"


rule ch5_figure_5_12:
    """Figure 5.12: (1 - eps)^-n and the recomputed bound ratio of our trained LeNet-5."""
    input:
        model=f"results/models/{CH5_FIG['figure_5_12']['model']}.pt",
        data=ch5_data(CH5_FIG["figure_5_12"]["model"]),
    output:
        artifact_files("figure_5_12"),
        table="figures/figure_5_12.csv",
    log:
        "logs/ch5_figures/figure_5_12.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_5_12.tsv"
    params:
        **job_params("ch5_figure_5_12.py", seed=True, device=True, settings=kernel_scaling_settings(config)),
    threads: CH5["threads"]
    resources:
        gpu=1,
    script:
        "../scripts/ch5_figure_5_12.py"


rule ch5_figure_5_13:
    """Figure 5.13: Eq. (5.13)'s curve and the same quantity from our LeNet-5's per-layer kappas."""
    input:
        bounds=f"results/bounds/{CH5_FIG['figure_5_13']['model']}.csv",
    output:
        artifact_files("figure_5_13"),
        table="figures/figure_5_13.csv",
    log:
        "logs/ch5_figures/figure_5_13.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_5_13.tsv"
    params:
        **job_params("ch5_figure_5_13.py", settings=CH5_FIG["figure_5_13"]),
    script:
        "../scripts/ch5_figure_5_13.py"


rule ch5_figure_2_5:
    """Figure 2.5: iterative FGS perturbation of one test image (CIFAR-NIN, as in the thesis)."""
    input:
        model=lambda wc: f"results/models/{ch5_iterative_model(wc)}.pt",
        data=lambda wc: ch5_data(ch5_iterative_model(wc)),
    output:
        artifact_files("figure_2_5"),
    log:
        "logs/ch5_figures/figure_2_5.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_2_5.tsv"
    params:
        **job_params("ch5_figure_2_5.py", seed=True, device=True, settings=iterative_figure_settings(config)),
        model=ch5_iterative_model,
    resources:
        gpu=1,
    script:
        "../scripts/ch5_figure_2_5.py"


use rule ch5_figure_2_5 as ch5_figure_2_5_model with:
    output:
        artifact_files(f"figure_2_5_{{model,{CH5_MODEL_RE}}}"),
    log:
        "logs/ch5_figures/figure_2_5_{model}.log",
    benchmark:
        "logs/benchmarks/ch5_figures/figure_2_5_{model}.tsv"


rule ch5_strong_attack:
    """Beyond the thesis: DeepFool, DDN and FMN on the first test samples (all of them on a GPU)."""
    input:
        model="results/models/{model}.pt",
        data=lambda wc: ch5_data(wc.model),
    output:
        "results/strong_attacks/{model}.csv",
    log:
        "logs/ch5_strong_attack/{model}.log",
    benchmark:
        "logs/benchmarks/ch5_strong_attack/{model}.tsv"
    wildcard_constraints:
        model=CH5_MODEL_RE,
    params:
        **job_params("ch5_strong_attack.py", device=True, settings=CH5["strong_attacks"]),
    threads: CH5["threads"]
    resources:
        gpu=1,
    script:
        "../scripts/ch5_strong_attack.py"


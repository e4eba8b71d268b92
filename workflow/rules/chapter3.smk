# Chapter 3: linear classifiers. Table 3.1 and Figure 3.2 (Section 3.3), Figure 3.1 (Section 3.1).
#
#   per test k:  ch3_linear_test -> results/linear/test_{k}.csv   (per sample: bound, FGS, exact)
#   then         ch3_table_3_1   -> figures/table_3_1.{csv,md,tex}
#                ch3_figure_3_2  -> figures/figure_3_2.{pdf,png}
#                ch3_figure_3_1  -> figures/figure_3_1.{pdf,png} (+ results/linear/figure_3_1.json)
#
# `snakemake --cores all chapter3` builds all of it; the config slice is config["chapter3"]. Logic lives
# in advbounds.experiments.linear and advbounds.plotting.chapters34; the scripts are thin adapters.

CH3 = config["chapter3"]
CH3_TESTS = [str(k) for k in range(1, len(CH3["tests"]) + 1)]
CH3_TEST_FILES = expand("results/linear/test_{test}.csv", test=CH3_TESTS)


rule chapter3:
    """Every Chapter 3 artifact."""
    input:
        chapter_targets(3),


rule ch3_linear_test:
    """One test of Table 3.1: random linear classifiers, per-sample bound (Lemma 3.5), FGS (Alg. 2.1)
    and exact minimal perturbation."""
    output:
        "results/linear/test_{test}.csv",
    log:
        "logs/ch3_linear_test/test_{test}.log",
    wildcard_constraints:
        test=r"\d+",
    params:
        **job_params("ch3_linear_test.py", seed=True,
            settings=lambda wc: {
                "number": int(wc.test),
                "spec": CH3["tests"][int(wc.test) - 1],
                "attack": CH3["attack"],
                "dtype": CH3["dtype"],
            }
        ),
    threads: CH3["threads"]
    script:
        "../scripts/ch3_linear_test.py"


rule ch3_table_3_1:
    """Table 3.1: deviation statistics, flips, violations and the exact-perturbation columns."""
    input:
        tests=CH3_TEST_FILES,
    output:
        artifact_files("table_3_1"),
    log:
        "logs/ch3_table_3_1.log",
    params:
        **job_params("ch3_table_3_1.py", caption=table_caption("table_3_1"),
            settings={
                "tests": CH3["tests"],
                "violation_atol": CH3["violation_atol"],
                "fgs_optimal_rtol": CH3["fgs_optimal_rtol"],
            }
        ),
    script:
        "../scripts/ch3_table_3_1.py"


rule ch3_figure_3_2:
    """Figure 3.2: boxplots of the deviations per test (FGS, and the exact perturbation beside it)."""
    input:
        tests=CH3_TEST_FILES,
    output:
        artifact_files("figure_3_2"),
    log:
        "logs/ch3_figure_3_2.log",
    params:
        **job_params("ch3_figure_3_2.py"),
    script:
        "../scripts/ch3_figure_3_2.py"


rule ch3_figure_3_1:
    """Figure 3.1: the minimal perturbation of a binary linear classifier, from a computed example."""
    output:
        figure=artifact_files("figure_3_1"),
        example="results/linear/figure_3_1.json",
    log:
        "logs/ch3_figure_3_1.log",
    params:
        **job_params("ch3_figure_3_1.py", seed=True, settings=CH3["figure_3_1"]),
    script:
        "../scripts/ch3_figure_3_1.py"

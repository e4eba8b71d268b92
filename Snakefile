# Replication pipeline for J. Peck, "Robustness of Classifiers to Adversarial Perturbations"
# (Ghent, 2017). This file is the table of contents; the rules live in workflow/rules/.
#
#   snakemake --cores all                               # the whole thesis (config/config.yaml)
#   snakemake --cores all figures/table_3_1.csv         # one artifact and only what it needs
#   snakemake --cores 2 --configfile config/smoke.yaml  # tiny synthetic run of the same DAG

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/chapter3.smk"
include: "workflow/rules/chapter4.smk"
include: "workflow/rules/chapter5.smk"
include: "workflow/rules/sandwich.smk"
include: "workflow/rules/protocol.smk"
include: "workflow/rules/report.smk"


localrules: all, chapter3, chapter4, chapter5, fetch_spambase, fetch_mnist, fetch_cifar10, ch3_table_3_1, ch3_figure_3_1, ch3_figure_3_2, ch4_table_4_1, ch4_figure_2_1, ch4_table_4_2, ch4_figure_4_1, ch4_table_4_3, ch4_figure_4_2, ch4_accuracies, ch4_figure_4_3, ch4_comparison, ch5_table_5_1, ch5_table_5_2, ch5_table_5_3, ch5_figure_dataset, ch5_figure_5_10, ch5_figure_5_11, ch5_figure_5_13, ch5_sandwich, sandwich_summary, protocol_study, report, report_gallery


rule all:
    default_target: True
    input:
        get_final_output(),

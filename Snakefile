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
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        ALL_TARGETS,

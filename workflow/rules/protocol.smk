# The protocol study (issue 13, section 3): which reading of the thesis's FGS protocol (M, halvings,
# returned point, statistics' population, bound unit) reproduces each published table of Chapters 3-5?
#
#   protocol_study -> figures/protocol_study.{csv,md,tex}
#
# It reads the main run's per-sample results (same models, same samples) and derives every reading
# post hoc; no model runs again. Logic: advbounds.experiments.protocol; the config slice is
# config["protocol_study"] (the family) plus the settings the main run's tables were made with.
# Include after chapter3.smk, chapter4.smk and chapter5.smk (it reads their file lists).

# a few seconds of pandas, never worth a cluster job: local (the Snakefile's localrules line)

rule protocol_study:
    """Every reading of config protocol_study against Tables 3.1, 4.2, 4.3, 5.1, 5.2 and 5.3."""
    input:
        paper_values="reference/paper_values.yaml",
        linear=CH3_TEST_FILES,
        random_mlp=CH4_RANDOM_FILES,
        trained=CH4_TRAINED_FILES,
        **{f"networks_{kind}": files for kind, files in ch5_model_inputs(CH5["networks"]).items()},
        **{f"lrn_networks_{kind}": files for kind, files in ch5_model_inputs(CH5["lrn_networks"]).items()},
    output:
        artifact_files("protocol_study"),
    log:
        "logs/protocol_study.log",
    params:
        **job_params("protocol_study.py", settings=protocol_study_settings(config)),
    script:
        "../scripts/protocol_study.py"

# The protocol study (issue 13, section 3): which reading of the thesis's FGS protocol (M, halvings,
# returned point, statistics' population, bound unit) reproduces each published table of Chapters 3-5?
#
#   protocol_study -> figures/protocol_study.{csv,md,tex}
#
# It reads the main run's per-sample results (same models, same samples) and derives every reading
# post hoc; no model runs again. Logic: advbounds.experiments.protocol; the config slice is
# config["protocol_study"] (the family) plus the settings the main run's tables were made with.
# Include after chapter3.smk, chapter4.smk and chapter5.smk (it reads their file lists).

# a few seconds of pandas: never worth a cluster job
localrules: protocol_study


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
        **job_params("protocol_study.py",
            settings={
                "family": config["protocol_study"],
                "report": config["report"],
                "chapter3": {"tests": CH3["tests"], "eps_max": CH3["attack"]["eps_max"],
                             "violation_atol": CH3["violation_atol"], "fgs_optimal_rtol": CH3["fgs_optimal_rtol"]},
                "chapter4": {"tests": CH4["random_mlp"]["tests"], "eps_max": CH4["random_mlp"]["attack"]["eps_max"],
                             "datasets": CH4_DATASETS, "trained_eps_max": CH4["trained"]["attack"]["eps_max"],
                             "reference_eps_max": CH4["reference_attack"]["eps_max"]},
                "chapter5": {"networks": CH5["networks"], "lrn_networks": CH5["lrn_networks"],
                             "eps_max": CH5["attack"]["eps_max"]},
            }
        ),
    script:
        "../scripts/protocol_study.py"

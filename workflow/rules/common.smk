# Shared set-up: config validation, paths and small helpers for the rule files.
# Validation runs when the workflow is parsed, so a bad config stops the run before any job.

from pathlib import Path

from snakemake.utils import validate

import yaml

from advbounds.codehash import code_fingerprint
from advbounds.report.catalog import REPORT_HTML, artifact_files, stage_targets, table_caption
from advbounds.config import (
    chapters34_sandwich_settings,
    chapters34_sandwiches,
    check_config,
    coerce_command_line_strings,
    example_figure_settings,
    iterative_figure_settings,
    kernel_scaling_settings,
    protocol_study_settings,
    regularization_ells,
    sandwich_experiments,
    sandwich_models,
    trained_mlp_settings,
)

CONFIG_SCHEMA = "workflow/schemas/config.schema.yaml"

# --config leaves nested values as strings: give them their schema types, then let the schema judge
coerce_command_line_strings(config, yaml.safe_load(Path(workflow.basedir, CONFIG_SCHEMA).read_text()))
validate(config, schema=f"../../{CONFIG_SCHEMA}")
check_config(config)

DATA_DIR = config["data_dir"]
REPORT_GALLERY = "results/report/gallery"
DATASETS = ["iris", "wine", "spambase", "mnist", "cifar10"]



def get_final_output():
    """Every final artifact, the default target's input. That is the prepared data sets, each
    chapter's catalog entries (advbounds.report.catalog, the one list of them) and the report."""
    return [
        *expand("results/data/{dataset}.pt", dataset=DATASETS),
        *chapter_targets(3),
        *chapter_targets(4),
        *chapter_targets(5),
        REPORT_HTML,
        REPORT_GALLERY,
    ]


def chapter_targets(chapter):
    """The final artifacts of one chapter's rules (`snakemake chapter<N>`); Chapter 5 adds the
    Figure 2.5 variants of the models config chapter5.figures.figure_2_5.extra_models names, and
    the sandwich figure of every network of Tables 5.1-5.3; Chapters 3 and 4 add the sandwich
    figure of each of their experiments."""
    variants = [f"sandwich_{e.name}" for e in chapters34_sandwiches(config) if e.chapter == chapter]
    if chapter == 5:
        variants += [f"figure_2_5_{m}" for m in config["chapter5"]["figures"]["figure_2_5"]["extra_models"]]
        variants += [f"sandwich_{m}" for m in sandwich_models(config)]
    return stage_targets(chapter, variants)


def job_params(script, *, settings=None, seed=False, device=False, **extra):
    """The params of a job: exactly what its code reads, so that Snakemake's params trigger reruns
    a job when, and only when, something it uses changes.

    ``script``: the rule's file in workflow/scripts/; ``code`` is the fingerprint of every advbounds
    module it imports (advbounds.codehash), so a library change reruns the jobs that run it.
    ``settings``: the config slice the job reads. ``seed`` / ``device``: only for jobs whose results
    depend on them. Settings that change how a job gets its result but not the result (``offline``)
    are read from the config by advbounds.jobs and are no rerun trigger.
    """
    params = {"code": code_fingerprint(Path(workflow.basedir) / "workflow" / "scripts" / script)}
    if settings is not None:
        params["settings"] = settings
    if seed:
        params["seed"] = config["seed"]
    if device:
        params["device"] = config["device"]
    return {**params, **extra}


def dataset_raw_files(dataset, missing_only=False):
    """Raw files of a dataset under data_dir (none for Iris/Wine), each as it is on disk: an MNIST
    file pre-staged as torchvision's extracted *-ubyte (no .gz) is named so. ``missing_only``: just
    the absent ones, i.e. what the fetch rule downloads -- Snakemake deletes a job's existing outputs
    before running it, so a pre-staged file must never be one."""
    from advbounds.data import raw_files

    return [f"{DATA_DIR}/{path}" for path in raw_files(dataset, DATA_DIR, missing_only=missing_only)]

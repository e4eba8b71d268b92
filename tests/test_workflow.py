"""The Snakemake workflow itself: lint, the thesis DAG, config validation, the smoke data stages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smoke_support import copy_repo, dry_run, run_snakemake, smoke_run

pytestmark = pytest.mark.workflow

DATASETS = ["iris", "wine", "spambase", "mnist", "cifar10"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("workflow") / "repo")


#: the one lint we decline on purpose: every rule runs in the package's one environment, so no
#: rule names a conda environment or container (config/README.md, "workflow catalog conventions")
DECLINED_LINT = "Specify a conda environment or container for each rule."


def test_lint_is_clean(tree: Path) -> None:
    """``snakemake --lint`` finds nothing but the declined per-rule environment lint."""
    proc = run_snakemake(tree, "--lint", configfile=None, check=False)
    output = proc.stdout + proc.stderr
    if "Congratulations, your workflow is in a good condition" in output:
        return
    lints = [line.strip() for line in output.splitlines() if line.strip().startswith("* ")]
    assert lints, output[-4000:]
    other = sorted({lint for lint in lints if lint != f"* {DECLINED_LINT}:"})
    assert not other, "\n".join(other) + "\n" + output[-4000:]


def test_thesis_config_plans_every_data_stage(tree: Path) -> None:
    jobs = dry_run(tree, configfile=None)
    prepared = {dict(job.wildcards).get("dataset") for job in jobs if job.rule == "prepare_data"}
    assert prepared == set(DATASETS)
    assert {"fetch_spambase", "fetch_mnist", "fetch_cifar10"} <= {job.rule for job in jobs}


@pytest.mark.parametrize("override, key", [
    (["--config", "sedd=3"], "sedd"),
    (["--config", "seed=abc"], "seed"),
    (["--config", "device=gpu"], "device"),
])
def test_bad_config_value_stops_the_run_before_any_job(tree: Path, override: list[str], key: str) -> None:
    proc = run_snakemake(tree, *override, "--", "results/data/iris.pt", configfile=None, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Error validating config" in output and key in output
    assert not (tree / "results" / "data" / "iris.pt").exists()


def test_out_of_range_value_in_a_config_file_is_named(tree: Path) -> None:
    config = yaml.safe_load((tree / "config" / "smoke.yaml").read_text())
    config["datasets"]["uci_split"]["train"] = 1.5
    bad = tree / "config" / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = run_snakemake(tree, "-n", "results/data/iris.pt", configfile="config/bad.yaml", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1.5" in output and "['uci_split']['train']" in output


def test_split_fractions_must_sum_to_one(tree: Path) -> None:
    config = yaml.safe_load((tree / "config" / "smoke.yaml").read_text())
    config["datasets"]["uci_split"]["train"] = 0.5
    (tree / "config" / "bad_sum.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tree, "-n", "results/data/iris.pt", configfile="config/bad_sum.yaml", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "datasets.uci_split" in output and "must sum to 1" in output


def test_smoke_data_stages_run_end_to_end(tmp_path_factory) -> None:
    import torch

    tree = smoke_run(tmp_path_factory).path  # the whole smoke DAG, shared with the other workflow tests
    smoke = yaml.safe_load((tree / "config" / "smoke.yaml").read_text())["datasets"]["synthetic_sizes"]
    mnist = torch.load(tree / "results/data/mnist.pt", weights_only=False)
    assert mnist["x_train"].shape[0] == smoke["mnist_train"] and mnist["meta"]["synthetic"] is True
    for name in DATASETS:
        assert (tree / "logs" / "data" / f"prepare_{name}.log").exists()
        assert (tree / "results" / "provenance" / "results" / "data" / f"{name}.pt.json").exists()
    # the synthetic raw files were written in the real formats where the real ones would go
    assert (tree / "resources/smoke/mnist/MNIST/raw/t10k-images-idx3-ubyte.gz").exists()
    assert (tree / "resources/smoke/cifar10/cifar-10-python.tar.gz").exists()

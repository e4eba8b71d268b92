"""Failure behaviour: a killed training job resumes cleanly; a bad config value fails early.

* The smoke training job of LeNet-5 runs under Snakemake in a subprocess, with more iterations and a
  checkpoint every few of them (a modified copy of the smoke config). Once a checkpoint exists the
  whole process group is killed (SIGTERM: Snakemake's graceful path; SIGKILL: nothing gets to clean
  up). No model file may exist afterwards (outputs are written atomically), the rerun must run the
  training job again, resume from the checkpoint, and leave a complete model that loads and
  carries the same weights as an uninterrupted run.
* A config value the schema forbids stops `snakemake` before any job starts: non-zero exit, the
  offending key in the message, and not a single output, log or results folder written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

import smoke_support as sm

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

MODEL = "lenet5"
MODEL_DATA = "mnist"
CONFIG = "config/robustness.yaml"
TARGET = f"results/models/{MODEL}.pt"
CHECKPOINT = f"results/checkpoints/{MODEL}.pt"
ITERATIONS = 240
CHECKPOINT_EVERY = 10


def _long_training_config(tree: Path) -> Path:
    config = yaml.safe_load((tree / sm.SMOKE_CONFIG).read_text())
    training = config["chapter5"]["models"][MODEL]["training"]
    training.update(iterations=ITERATIONS, checkpoint_every=CHECKPOINT_EVERY)
    training.pop("epochs", None)
    path = tree / CONFIG
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A copy of the repository whose MNIST stand-in is already prepared (shared by the trees below)."""
    tree = sm.copy_repo(tmp_path_factory.mktemp("robustness-base"))
    config = _long_training_config(tree)
    sm.run_snakemake(tree, "--", f"results/data/{MODEL_DATA}.pt", configfile=str(config))
    return tree


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The model the long training gives when nobody interrupts it."""
    tree = sm.clone(prepared, tmp_path_factory.mktemp("uninterrupted"))
    sm.run_snakemake(tree, "--", TARGET, cores=1, configfile=str(tree / CONFIG))
    return _state_dict(tree / TARGET)


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    from advbounds.training import load_model

    return {k: v.detach().cpu().clone() for k, v in load_model(path, "cpu").state_dict().items()}


def _start(tree: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen(sm.snakemake_cmd("--", TARGET, cores=1, configfile=str(config)), cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=sm._env())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended (exit {proc.returncode}) before {path} appeared:\n"
                                 + proc.stdout.read()[-4000:])
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_resumes_cleanly(prepared, tmp_path_factory, uninterrupted, sig) -> None:
    tree = sm.clone(prepared, tmp_path_factory.mktemp(f"killed-{sig.name}"))
    config = tree / CONFIG
    proc = _start(tree, config)
    _wait_for(tree / CHECKPOINT, proc)
    os.killpg(proc.pid, sig)  # snakemake and the job it runs
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    _wait_for_group_exit(proc.pid)

    # the kill left no model file behind: nothing half-written a later step could pick up
    assert not (tree / TARGET).exists(), f"{TARGET} exists after the training job was killed"
    assert not (tree / f"results/models/{MODEL}.metrics.json").exists()
    assert (tree / CHECKPOINT).exists()

    if sig == signal.SIGKILL:  # nothing could release the lock; the documented recovery is --unlock
        sm.run_snakemake(tree, "--unlock", cores=1, configfile=str(config))
    rerun = sm.run_snakemake(tree, "--", TARGET, cores=1, configfile=str(config))
    reran = {job.rule: dict(job.wildcards) for job in sm.parse_dry_run(rerun.stdout + rerun.stderr)}
    assert reran.get("ch5_train") == {"model": MODEL}, f"the rerun did not run the training job: {reran}"

    metrics = json.loads((tree / f"results/models/{MODEL}.metrics.json").read_text())
    assert metrics["resumed_from"] >= CHECKPOINT_EVERY, "the rerun started from scratch instead of the checkpoint"
    assert metrics["resumed_from"] < ITERATIONS
    weights = _state_dict(tree / TARGET)
    assert weights.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(weights[name], tensor), f"{name} differs from the uninterrupted run"
    # and the completed target is up to date: a dry run plans nothing
    assert not sm.job_keys(sm.dry_run(tree, "--", TARGET, configfile=str(config)))


def _wait_for_group_exit(pgid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------
# bad config values
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_tree(tmp_path_factory) -> Path:
    return sm.copy_repo(tmp_path_factory.mktemp("bad-config"))


def _set(config: dict, path: tuple, value) -> dict:
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


def _rename(config: dict, path: tuple, new_name: str) -> dict:
    node = config
    for key in path[:-1]:
        node = node[key]
    node[new_name] = node.pop(path[-1])
    return config


BAD = {
    "negative seed": (lambda c: _set(c, ("seed",), -1), "seed"),
    "unknown device": (lambda c: _set(c, ("device",), "gpu"), "device"),
    "misspelt key": (lambda c: _rename(c, ("chapter5", "attack", "eps_max"), "eps_maxx"), "eps_maxx"),
    "wrong type": (lambda c: _set(c, ("chapter5", "attack", "eps_max"), "a hundred"), "eps_max"),
    "tolerance above 1": (lambda c: _set(c, ("report", "tolerances", "statistical", "rel"), 2.0), "rel"),
    "split not summing to 1": (lambda c: _set(c, ("datasets", "uci_split", "train"), 0.9), "uci_split"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_config_value_fails_before_any_job(empty_tree, tmp_path, case) -> None:
    mutate, key = BAD[case]
    config = mutate(yaml.safe_load((empty_tree / sm.SMOKE_CONFIG).read_text()))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config, sort_keys=False))
    before = {p.name for p in empty_tree.iterdir()}

    proc = sm.run_snakemake(empty_tree, cores=1, configfile=str(bad), check=False, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    assert key in output, f"the error does not name {key!r}:\n{output[-3000:]}"
    assert not sm.parse_dry_run(output), "a job started"
    created = {p.name for p in empty_tree.iterdir()} - before - {".snakemake"}
    assert not created, f"a failed config check still created {created}"
    assert not (empty_tree / "results").exists() and not (empty_tree / "logs").exists()

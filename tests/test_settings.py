"""advbounds.settings: the typed search and training settings, their checks, and their agreement
with the config schema (the parse-time gate) and the configs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advbounds.settings import DEFAULT_VERIFY_MARGIN_ULPS, SearchSettings, TrainingSettings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
CONFIGS = ("config/config.yaml", "config/smoke.yaml")  # chapter5_cpu_mnist.yaml is an overlay of config.yaml

#: search settings the code sets, never the config: FGV's normalisation (the Section 4.4 sweep
#: switches it on for its FGV run) and the layout / precision / verification knobs of tests and benchmarks
SEARCH_CODE_ONLY = {"fgv_normalize", "channels_last", "allow_tf32", "verify_margin_ulps"}
#: training settings each job sets itself: the seed (from the config's seed) and the Section 4.4 l
TRAINING_PER_JOB = {"seed", "regularization"}


def names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def ch5(schema=SCHEMA):
    return schema["properties"]["chapter5"]["properties"]


def ch34_attack_blocks():
    ch3 = SCHEMA["properties"]["chapter3"]["properties"]
    ch4 = SCHEMA["properties"]["chapter4"]["properties"]
    return {
        "chapter3.attack": ch3["attack"],
        "chapter3.figure_3_1.attack": ch3["figure_3_1"]["properties"]["attack"],
        "chapter4.reference_attack": ch4["reference_attack"],
        "chapter4.random_mlp.attack": ch4["random_mlp"]["properties"]["attack"],
        "chapter4.trained.attack": ch4["trained"]["properties"]["attack"],
        "chapter4.regularization.attack": ch4["regularization"]["properties"]["attack"],
    }


def test_the_schema_names_exactly_the_search_settings_the_config_may_set():
    assert set(ch5()["attack"]["properties"]) == names(SearchSettings) - SEARCH_CODE_ONLY
    for key, block in ch34_attack_blocks().items():
        assert set(block["properties"]) <= names(SearchSettings), key
        assert set(block["required"]) >= {"eps_max", "tol"}, key


def test_the_schema_names_exactly_the_training_settings_the_config_may_set():
    ch5_training = ch5()["models"]["additionalProperties"]["properties"]["training"]["properties"]
    assert set(ch5_training) == names(TrainingSettings) - TRAINING_PER_JOB
    ch4_training = SCHEMA["properties"]["chapter4"]["properties"]["trained"]["properties"]["training"]["properties"]
    assert set(ch4_training) <= names(TrainingSettings) - TRAINING_PER_JOB


def test_every_config_block_builds_its_settings():
    for path in CONFIGS:
        config = yaml.safe_load((REPO / path).read_text())
        if "chapter5" in config:
            assert SearchSettings.from_config(config["chapter5"]["attack"]).eps_max > 0
            for name, model in config["chapter5"]["models"].items():
                assert TrainingSettings.from_config(model["training"]).lr > 0, name
        ch3, ch4 = config.get("chapter3"), config.get("chapter4")
        blocks = []
        if ch3:
            blocks += [ch3["attack"], ch3["figure_3_1"]["attack"]]
        if ch4:
            blocks += [ch4["reference_attack"], ch4["random_mlp"]["attack"], ch4["trained"]["attack"],
                       ch4["regularization"]["attack"]]
            for dataset, entry in ch4["trained"]["datasets"].items():
                TrainingSettings.from_config({**ch4["trained"]["training"], **entry.get("training", {})})
        for block in blocks:
            assert SearchSettings.from_config(block).tol > 0


def test_unknown_keys_are_named_never_dropped():
    with pytest.raises(ValueError, match=r"unknown attack settings \['epsilon'\]"):
        SearchSettings.from_config({"eps_max": 1.0, "tol": 0.1, "epsilon": 1})
    with pytest.raises(ValueError, match=r"unknown training settings \['learning_rate'\]"):
        TrainingSettings.from_config({"iterations": 10, "learning_rate": 0.1})
    # a setting the search understands reaches it (it used to be accepted and dropped on the way)
    assert SearchSettings.from_config({"eps_max": 1.0, "tol": 0.1, "fgv_normalize": True}).fgv_normalize


def test_search_settings_defaults_and_normalisation():
    s = SearchSettings(eps_max=100, tol=1e-4, clip=[0, 255], batch_size=64.0)
    assert (s.method, s.loss_label, s.search, s.grid_points) == ("fgs", "predicted", "bisection", 100)
    assert s.eps_max == 100.0 and isinstance(s.eps_max, float) and s.clip == (0.0, 255.0)
    assert s.batch_size == 64 and isinstance(s.batch_size, int)
    assert s.verify_margin_ulps == DEFAULT_VERIFY_MARGIN_ULPS and s.channels_last is None
    changed = s.replace(search="grid", grid_points=16)
    assert changed.search == "grid" and s.search == "bisection"  # frozen: replace gives a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.tol = 1.0  # type: ignore[misc]
    assert hash(s) == hash(SearchSettings(eps_max=100.0, tol=1e-4, clip=(0.0, 255.0), batch_size=64))


@pytest.mark.parametrize("bad, message", [
    (dict(method="lbfgs"), "method"),
    (dict(eps_max=0.0), "eps_max"),
    (dict(eps_max=float("inf")), "eps_max"),
    (dict(tol=-1.0), "tol"),
    (dict(tol="small"), "tol"),
    (dict(search="linear"), "search"),
    (dict(clip=(1.0, 0.0)), "clip"),
    (dict(loss_label="target"), "loss_label"),
    (dict(grid_points=0), "grid_points"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(verify_margin_ulps=-1.0), "verify_margin_ulps"),
    (dict(fgv_normalize="yes"), "fgv_normalize"),
    (dict(channels_last=1), "channels_last"),
])
def test_search_settings_reject_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        SearchSettings(**{"eps_max": 1.0, "tol": 0.1, **bad})
    with pytest.raises(ValueError, match=message):
        SearchSettings(eps_max=1.0, tol=0.1).replace(**bad)


def test_training_settings_resolve_like_the_old_dict():
    s = TrainingSettings(iterations=10, lr_milestones=[5, 2])
    assert s.to_dict() == {
        "optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64,
        "iterations": 10, "epochs": None, "seed": 0, "regularization": 0.0, "lr_policy": "multistep",
        "lr_milestones": [2, 5], "lr_gamma": 0.1, "lr_power": None, "checkpoint_every": 500,
        "eval_batch_size": 1000,
    }
    assert list(s.to_dict()) == [f.name for f in dataclasses.fields(TrainingSettings)]
    assert "checkpoint_every" not in s.trajectory() and "eval_batch_size" not in s.trajectory()
    assert s.trajectory() == s.replace(checkpoint_every=7, eval_batch_size=3).trajectory()
    assert s.trajectory() != s.replace(lr=0.5).trajectory()
    assert TrainingSettings(optimizer="SGD", epochs=2).optimizer == "sgd"


@pytest.mark.parametrize("bad", [
    {"iterations": 10, "epochs": 1},
    {},
    {"iterations": 10, "optimizer": "rmsprop"},
    {"iterations": 0},
    {"iterations": 10, "lr": 0.0},
    {"iterations": 10, "momentum": 1.0},
    {"iterations": 10, "weight_decay": -1.0},
    {"iterations": 10, "lr_policy": "cosine"},
    {"iterations": 10, "lr_policy": "inv", "lr_power": 0.75},  # gamma left at the multistep default
    {"iterations": 10, "lr_policy": "inv", "lr_gamma": 1e-4, "lr_power": -1.0},
])
def test_training_settings_reject_bad_values(bad):
    with pytest.raises(ValueError):
        TrainingSettings(**bad)


def test_the_settings_module_imports_without_torch():
    """The config code reads it while Snakemake parses the workflow: no torch there."""
    code = "import sys, advbounds.settings; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0

"""advbounds.config: --config strings to schema types, and the checks that span several keys."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from jsonschema import validate

from advbounds.config import ConfigError, check_config, coerce_command_line_strings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_command_line_strings_get_their_schema_types():
    """Snakemake's --config leaves `true` and every value inside a mapping a string."""
    config = copy.deepcopy(CONFIG)
    config["offline"] = "true"
    config["datasets"]["allow_partial_mnist_train"] = "True"
    config["datasets"]["image_val_fraction"] = "0.25"
    config["seed"] = "7"
    coerce_command_line_strings(config, SCHEMA)
    assert config["offline"] is True and config["datasets"]["allow_partial_mnist_train"] is True
    assert config["datasets"]["image_val_fraction"] == 0.25 and config["seed"] == 7
    validate(config, SCHEMA)


@pytest.mark.parametrize("key, value", [("offline", "maybe"), ("seed", "seven"), ("device", "gpu")])
def test_a_real_mistake_still_fails_the_schema(key, value):
    config = copy.deepcopy(CONFIG)
    config[key] = value
    coerce_command_line_strings(config, SCHEMA)
    with pytest.raises(Exception, match=value):
        validate(config, SCHEMA)


def test_strings_the_schema_wants_as_strings_are_left_alone():
    config = copy.deepcopy(CONFIG)
    config["data_dir"] = "123"
    config["device"] = "cpu"
    coerce_command_line_strings(config, SCHEMA)
    assert config["data_dir"] == "123" and config["device"] == "cpu"


def test_the_thesis_config_passes_the_cross_key_checks():
    check_config(CONFIG)


def test_a_split_that_does_not_sum_to_one_is_named():
    config = copy.deepcopy(CONFIG)
    config["datasets"]["uci_split"]["train"] = 0.9
    with pytest.raises(ConfigError, match="datasets.uci_split"):
        check_config(config)


def test_a_figure_naming_an_unknown_model_is_named():
    config = copy.deepcopy(CONFIG)
    config["chapter5"]["figures"]["figure_5_12"]["model"] = "lenet99"
    with pytest.raises(ConfigError, match="chapter5.figures.figure_5_12.model names model 'lenet99'"):
        check_config(config)


def test_the_schema_names_exactly_the_fields_of_each_strong_attacks_settings():
    """One route from the YAML to the code: the schema may not accept a key the settings class
    would reject, nor miss one it takes."""
    import dataclasses

    from advbounds.experiments.strong import STRONG_ATTACKS

    attacks = SCHEMA["properties"]["chapter5"]["properties"]["strong_attacks"]["properties"]["attacks"]["properties"]
    assert set(attacks) == set(STRONG_ATTACKS)
    for name, (_, settings) in STRONG_ATTACKS.items():
        assert set(attacks[name]["properties"]) == {f.name for f in dataclasses.fields(settings)}, name


def test_the_configs_strong_attacks_build_their_settings():
    from advbounds.experiments.strong import StrongAttackConfig

    for path in ("config/config.yaml", "config/smoke.yaml"):
        section = yaml.safe_load((REPO / path).read_text())["chapter5"]["strong_attacks"]
        config = StrongAttackConfig.from_config(section)
        assert set(config.attacks) == set(section["attacks"])
    with pytest.raises(TypeError):
        StrongAttackConfig.from_config({"samples": {"cpu": 1, "cuda": None}, "attacks": {"ddn": {"stepz": 3}}})


def test_first_samples_by_device_type():
    from advbounds.config import first_samples

    samples = {"cpu": 1000, "cuda": None}
    assert first_samples(samples, "cpu", 10000) == 1000
    assert first_samples(samples, "cuda:0", 10000) == 10000
    assert first_samples(samples, "cpu", 20) == 20
    assert first_samples({"cpu": 5}, "mps", 100) == 5


def test_format_ell():
    from advbounds.config import format_ell

    assert [format_ell(v) for v in (0, 0.01, 1.0, 3)] == ["0", "0.01", "1", "3"]


def test_the_config_slices_the_rules_pass_on():
    from advbounds.config import (
        example_figure_settings,
        iterative_figure_settings,
        kernel_scaling_settings,
        regularization_ells,
        trained_mlp_settings,
    )

    config = copy.deepcopy(CONFIG)
    trained = config["chapter4"]["trained"]
    trained["datasets"]["wine"]["training"] = {"lr": 0.5}
    wine = trained_mlp_settings(config, "wine")
    assert wine == {"hidden": trained["datasets"]["wine"]["hidden"], "activation": trained["activation"],
                    "training": {**trained["training"], "lr": 0.5}}
    assert trained_mlp_settings(config, "iris")["training"] == trained["training"]
    config["chapter4"]["regularization"]["ells"] = [0, 0.1, 2.0]
    assert regularization_ells(config) == {"0": 0.0, "0.1": 0.1, "2": 2.0}
    ch5 = config["chapter5"]
    iterative = iterative_figure_settings(config)
    assert "model" not in iterative and "extra_models" not in iterative and iterative["attack"] == ch5["attack"]
    assert iterative["steps"] == ch5["figures"]["figure_2_5"]["steps"]
    assert example_figure_settings(config, "5_8") == {**ch5["figures"]["figure_5_8"], "attack": ch5["attack"]}
    scaling = kernel_scaling_settings(config)
    assert scaling["bounds"] == {k: ch5["bounds"][k] for k in ("batch_size", "relu_second_derivative")}
    assert scaling["epsilon"] == ch5["figures"]["figure_5_12"]["epsilon"]

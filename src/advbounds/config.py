"""The pipeline's config: command-line values to their schema types, and the checks that span
several keys. Torch-free: the Snakefile calls it while it parses.

The JSON schema (workflow/schemas/config.schema.yaml) is the parse-time gate for every single key;
this module adds what a schema cannot say (the UCI split sums to 1, every model a figure or table
names exists) and one repair: Snakemake's ``--config`` parser makes ``True``/``False`` booleans at
the top level only, and leaves every value inside a ``key={...}`` mapping a string, so
``--config offline=true`` or ``'datasets={"allow_partial_mnist_train": true}'`` would fail the
schema although the user wrote what YAML calls a boolean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

_BOOLEANS = {"true": True, "false": False}
_INTEGER = re.compile(r"[+-]?\d+")


class ConfigError(ValueError):
    """A config that passes the schema but is inconsistent; the message names the key."""


def _schema_types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _coerce_scalar(value: str, types: set[str]) -> Any:
    text = value.strip()
    if "boolean" in types and text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    if "integer" in types and _INTEGER.fullmatch(text):
        return int(text)
    if "number" in types:
        try:
            return float(text) if not _INTEGER.fullmatch(text) else int(text)
        except ValueError:
            return value
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None
    return value


def coerce_command_line_strings(config: MutableMapping[str, Any], schema: Mapping[str, Any]) -> MutableMapping[str, Any]:
    """Turn the strings that ``--config`` left behind into the types ``schema`` asks for, in place.

    Only strings are touched, and only where the schema wants a boolean (``true``/``false``, any
    case), an integer or a number; everything else is left for the schema to judge, so a real
    mistake (``offline=maybe``) still fails validation with its key named.
    """
    _coerce(config, schema)
    return config


def _coerce(value: Any, schema: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _coerce_scalar(value, _schema_types(schema))
    if isinstance(value, MutableMapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(value):
            sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                value[key] = _coerce(value[key], sub)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_coerce(item, schema["items"]) for item in value]
    return value


def check_config(config: Mapping[str, Any]) -> None:
    """The checks that span several keys; raises :class:`ConfigError` naming the key."""
    split = config["datasets"]["uci_split"]
    if abs(split["train"] + split["test"] + split["val"] - 1.0) > 1e-9:
        raise ConfigError("config key datasets.uci_split: train + test + val must sum to 1 "
                          f"(got {split['train']} + {split['test']} + {split['val']})")
    if "chapter5" in config:
        ch5 = config["chapter5"]
        named = {
            "chapter5.networks": ch5["networks"],
            "chapter5.lrn_networks": ch5["lrn_networks"],
            "chapter5.figures.figure_2_5.extra_models": ch5["figures"]["figure_2_5"]["extra_models"],
            **{f"chapter5.figures.{k}.model": [v["model"]] for k, v in ch5["figures"].items() if "model" in v},
        }
        for key, names in named.items():
            for name in names:
                if name not in ch5["models"]:
                    raise ConfigError(f"config key {key} names model {name!r}, which is not in "
                                      f"chapter5.models ({', '.join(ch5['models'])})")


def trained_mlp_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The config slice of the Section 4.3.2 MLP of ``dataset`` (rules ch4_train, ch4_regularization):
    its ``hidden`` sizes, the shared ``activation``, and ``chapter4.trained.training`` with the data
    set's own ``training`` entries on top."""
    trained = config["chapter4"]["trained"]
    entry = trained["datasets"][dataset]
    return {
        "hidden": entry["hidden"],
        "activation": trained["activation"],
        "training": {**trained["training"], **entry.get("training", {})},
    }


def regularization_ells(config: Mapping[str, Any]) -> dict[str, float]:
    """The Section 4.4 weights l of ``chapter4.regularization.ells`` by their file-name form
    (``0.1`` -> ``"0.1"``, ``2`` -> ``"2"``), in config order."""
    return {format_ell(ell): float(ell) for ell in config["chapter4"]["regularization"]["ells"]}


def format_ell(ell: float) -> str:
    """The file-name form of a regularization weight (``0.1`` -> ``"0.1"``, ``2`` -> ``"2"``)."""
    return f"{float(ell):g}"


def iterative_figure_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a Figure 2.5 job reads: ``chapter5.figures.figure_2_5`` less the model choices (the rule
    names the model), and the search settings ``chapter5.attack``."""
    ch5 = config["chapter5"]
    figure = {k: v for k, v in ch5["figures"]["figure_2_5"].items() if k not in ("model", "extra_models")}
    return {**figure, "attack": ch5["attack"]}


def example_figure_settings(config: Mapping[str, Any], label: str) -> dict[str, Any]:
    """What a Figure 5.8 / 5.9 job reads (``label`` ``"5_8"`` or ``"5_9"``): its figure entry and the
    search settings ``chapter5.attack`` that rebuild the adversarial images."""
    ch5 = config["chapter5"]
    return {**ch5["figures"][f"figure_{label}"], "attack": ch5["attack"]}


def kernel_scaling_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the Figure 5.12 job reads: its figure entry and the two bound settings it recomputes
    the bound with."""
    ch5 = config["chapter5"]
    bounds = {k: ch5["bounds"][k] for k in ("batch_size", "relu_second_derivative")}
    return {**ch5["figures"]["figure_5_12"], "bounds": bounds}


def protocol_study_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol study's params (rule protocol_study): its family of readings, the report's
    tolerances it scores with, and the settings the main run's tables were made with."""
    ch3, ch4, ch5 = config["chapter3"], config["chapter4"], config["chapter5"]
    return {
        "family": config["protocol_study"],
        "report": config["report"],
        "chapter3": {"tests": ch3["tests"], "eps_max": ch3["attack"]["eps_max"],
                     "violation_atol": ch3["violation_atol"], "fgs_optimal_rtol": ch3["fgs_optimal_rtol"]},
        "chapter4": {"tests": ch4["random_mlp"]["tests"], "eps_max": ch4["random_mlp"]["attack"]["eps_max"],
                     "datasets": list(ch4["trained"]["datasets"]), "trained_eps_max": ch4["trained"]["attack"]["eps_max"],
                     "reference_eps_max": ch4["reference_attack"]["eps_max"]},
        "chapter5": {"networks": ch5["networks"], "lrn_networks": ch5["lrn_networks"],
                     "eps_max": ch5["attack"]["eps_max"]},
    }


def sandwich_models(config: Mapping[str, Any]) -> list[str]:
    """The Chapter 5 networks that get a robustness sandwich: those of Tables 5.1-5.3 (config
    ``chapter5.networks`` and ``chapter5.lrn_networks``), once each, in that order."""
    ch5 = config.get("chapter5") or {}
    return list(dict.fromkeys([*ch5.get("networks", []), *ch5.get("lrn_networks", [])]))


@dataclass(frozen=True)
class SandwichExperiment:
    """One experiment of Chapters 3-4 that gets a robustness sandwich (``results/sandwich/<name>.csv``).

    ``kind``: ``linear`` (a Table 3.1 test), ``random_mlp`` (a Table 4.2 test) or ``trained_mlp``
    (a Table 4.3 MLP); ``key``: the test's 1-based number, or the data set's name."""

    name: str
    chapter: int
    kind: str
    key: int | str


def chapters34_sandwiches(config: Mapping[str, Any]) -> list[SandwichExperiment]:
    """The Chapter 3-4 experiments with a sandwich, named once here for the rules, the catalog and
    the report: ``table_3_1_test<k>`` per Table 3.1 test, ``table_4_2_test<k>`` per Table 4.2 test,
    ``mlp_<dataset>`` per trained MLP. A chapter gets them when its config slice has
    ``strong_attacks`` (the attacks and the sample count of its sandwiches)."""
    out: list[SandwichExperiment] = []
    ch3, ch4 = config.get("chapter3") or {}, config.get("chapter4") or {}
    if "strong_attacks" in ch3:
        out += [SandwichExperiment(f"table_3_1_test{k}", 3, "linear", k) for k in range(1, len(ch3["tests"]) + 1)]
    if "strong_attacks" in ch4:
        out += [SandwichExperiment(f"table_4_2_test{k}", 4, "random_mlp", k)
                for k in range(1, len(ch4["random_mlp"]["tests"]) + 1)]
        out += [SandwichExperiment(f"mlp_{dataset}", 4, "trained_mlp", dataset) for dataset in ch4["trained"]["datasets"]]
    return out


def chapters34_sandwich_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What the sandwich job of experiment ``name`` reads (rule sandwich_chapters34): its chapter's
    strong attacks and dtype, and what redraws (a random test) or reloads (a trained MLP) its
    classifiers as the chapter's own rule did."""
    experiment = {e.name: e for e in chapters34_sandwiches(config)}[name]
    chapter = config[f"chapter{experiment.chapter}"]
    settings = {"kind": experiment.kind, "strong_attacks": chapter["strong_attacks"], "dtype": chapter["dtype"]}
    if experiment.kind == "linear":
        return {**settings, "number": experiment.key, "spec": chapter["tests"][experiment.key - 1]}
    if experiment.kind == "random_mlp":
        return {**settings, "number": experiment.key, "spec": chapter["random_mlp"]["tests"][experiment.key - 1],
                "activation": chapter["random_mlp"]["activation"]}
    return {**settings, "split": chapter["trained"]["split"]}


def sandwich_experiments(config: Mapping[str, Any]) -> list[str]:
    """Every experiment with a sandwich, Chapters 3-4 first (:func:`chapters34_sandwiches`), then the
    Chapter 5 networks (:func:`sandwich_models`): the rows of ``figures/sandwich_summary``."""
    return [e.name for e in chapters34_sandwiches(config)] + sandwich_models(config)


def first_samples(samples: Mapping[str, int | None], device: Any, available: int) -> int:
    """How many of the first test samples a per-device setting (``{cpu: 1000, cuda: null}``, as in
    ``chapter5.strong_attacks.samples`` and ``chapter5.bounds.certify.samples``) asks for on
    ``device``; ``None`` = all ``available``. A device type without an entry uses the CPU's."""
    kind = str(getattr(device, "type", device)).split(":")[0]
    n = samples.get(kind, samples.get("cpu"))
    return available if n is None else min(int(n), available)

"""The protocol study (advbounds.experiments.protocol): the post-hoc derivation of each reading, the
family from the config, and the recovery of a known protocol from numbers made with it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from advbounds.experiments import protocol as ps
from advbounds.experiments.protocol import STATED, Protocol, ProtocolFamily

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())
REPORT = CONFIG["report"]


# ------------------------------------------------------------------------------------------------
# One reading from a converged search
# ------------------------------------------------------------------------------------------------


def test_rederive_cuts_m_and_snaps_to_the_coarse_grid():
    eps = np.array([0.1, 0.3, 0.74, 2.0, math.nan])
    converged = ps.rederive(eps, run_eps_max=10, eps_max=1, halvings=None, returned="upper", population="flipped")
    np.testing.assert_array_equal(converged.flipped, [True, True, True, False, False])
    np.testing.assert_allclose(converged.eps, [0.1, 0.3, 0.74, math.nan, math.nan])
    # 2 halvings of [0, 1]: grid step 0.25, cells (0, .25], (.25, .5], (.5, .75]
    upper = ps.rederive(eps, run_eps_max=10, eps_max=1, halvings=2, returned="upper", population="flipped")
    np.testing.assert_allclose(upper.eps[:3], [0.25, 0.5, 0.75])
    mid = ps.rederive(eps, run_eps_max=10, eps_max=1, halvings=2, returned="midpoint", population="all")
    # an unflipped sample ends in the top cell: its midpoint is M - h/2
    np.testing.assert_allclose(mid.eps, [0.125, 0.375, 0.625, 0.875, 0.875])
    assert mid.counted.all() and mid.flipped.sum() == 3
    single = ps.rederive(eps, run_eps_max=10, eps_max=1, halvings=0, returned="upper", population="all")
    np.testing.assert_allclose(single.eps, 1.0)


def test_rederive_refuses_an_m_the_main_run_never_searched():
    out = ps.rederive(np.array([0.5, 3.0]), run_eps_max=1, eps_max=2, halvings=None, returned="upper",
                      population="all")
    assert np.isnan(out.eps).all() and not out.counted.any()


def test_a_coarse_search_agrees_with_a_real_coarse_bisection():
    """The grid-cell derivation is what Algorithm 2.1 with k halvings returns on a monotone flip."""
    rng = np.random.default_rng(0)
    thresholds = rng.uniform(0, 1, 200)
    k, m = 5, 1.0
    derived = ps.rederive(thresholds, run_eps_max=m, eps_max=m, halvings=k, returned="midpoint", population="flipped")
    for threshold, value in zip(thresholds, derived.eps):
        low, high = 0.0, m
        for _ in range(k):  # Algorithm 2.1: test the midpoint, keep the half that holds the flip
            mid = low + (high - low) / 2
            low, high = (mid, high) if mid < threshold else (low, mid)
        assert value == pytest.approx(low + (high - low) / 2)


def test_protocol_validates_itself():
    with pytest.raises(ValueError, match="halvings"):
        Protocol(halvings=-1)
    with pytest.raises(ValueError, match="population"):
        Protocol(population="some")
    with pytest.raises(ValueError, match="eps_max"):
        Protocol(eps_max=0.0)
    # choices that cannot matter are folded away
    assert Protocol(halvings=0, returned="midpoint").canonical() == Protocol(halvings=0)
    assert Protocol(eps_max_scale="half_width").canonical() == STATED
    assert Protocol(eps_max=1.0, bound_unit="scaled").for_table("table_3_1") == Protocol(eps_max=1.0)
    assert Protocol(eps_max=1.0, bound_unit="scaled").for_table("table_5_1") == Protocol(bound_unit="scaled")
    assert Protocol(eps_max=1.0, halvings=4, returned="midpoint").free_choices() == 3


def test_family_from_the_config():
    family = ProtocolFamily.from_config(CONFIG["protocol_study"])
    readings = family.readings()
    assert readings[0] == STATED and len(set(readings)) == len(readings)
    assert all(r == r.canonical() for r in readings)
    with pytest.raises(ValueError, match="unknown"):
        ProtocolFamily.from_config({**CONFIG["protocol_study"], "colour": ["red"]})
    with pytest.raises(ValueError, match="returned"):
        ProtocolFamily.from_config({**CONFIG["protocol_study"], "returned": ["lower"]})
    with pytest.raises(ValueError, match="at least one"):
        ProtocolFamily.from_config({**CONFIG["protocol_study"], "halvings": []})


def test_smoke_config_runs_the_thesis_family():
    smoke = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    assert smoke["protocol_study"] == CONFIG["protocol_study"]


# ------------------------------------------------------------------------------------------------
# Synthetic main run: small per-sample frames of every chapter
# ------------------------------------------------------------------------------------------------


def _search_columns(rng, n, dim, run_eps_max, scale):
    eps = rng.uniform(0.02, 1.6, n) * scale
    flipped = eps <= run_eps_max
    eps = np.where(flipped, eps, np.nan)
    return eps, flipped, eps * math.sqrt(dim)


def _linear_frame(rng, number, spec, run_eps_max):
    n = spec["classifiers"] * spec["samples"]
    eps, flipped, norm = _search_columns(rng, n, spec["dim"], run_eps_max, ps.half_width(spec))
    bound = rng.uniform(0.0, 0.05, n)
    exact = bound + 1e-3
    return pd.DataFrame({"test": number, "classifier": np.repeat(np.arange(spec["classifiers"]), spec["samples"]),
                         "sample": np.tile(np.arange(spec["samples"]), spec["classifiers"]), "bound": bound,
                         "fgs_eps": eps, "fgs_norm": norm, "fgs_flipped": flipped, "exact_norm": exact,
                         "deviation": norm - bound, "exact_minus_bound": exact - bound, "fgs_minus_exact": norm - exact})


def _mlp_frame(rng, number, spec, run_eps_max):
    n = spec["mlps"] * spec["samples"]
    eps, flipped, norm = _search_columns(rng, n, spec["dim"], run_eps_max, ps.half_width(spec))
    bound = rng.uniform(0.0, 1e-3, n)
    return pd.DataFrame({"test": number, "mlp": np.repeat(np.arange(spec["mlps"]), spec["samples"]),
                         "sample": np.tile(np.arange(spec["samples"]), spec["mlps"]), "bound": bound,
                         "fgs_eps": eps, "fgs_norm": norm, "fgs_flipped": flipped, "deviation": norm - bound})


def _cnn_entry(rng, name, n=60):
    eps = rng.uniform(0.5, 130.0, n)
    flipped = eps <= 100.0
    direction = np.sqrt(rng.integers(700, 785, n).astype(float))
    bound = rng.uniform(1e-4, 1e-2, n)
    attacks = pd.DataFrame({"sample": np.arange(n), "eps": np.where(flipped, eps, np.nan),
                            "perturbation_norm": np.where(flipped, eps * direction, np.nan), "flipped": flipped,
                            "direction_norm": direction})
    bounds = pd.DataFrame({"sample": np.arange(n), "bound": bound, "kappa_scale": bound,
                           "kappa_conv1": bound / 256})
    return {"name": name, "model": name, "attacks": attacks, "bounds": bounds, "shape": (1, 28, 28),
            "accuracy": 0.99}


def synthetic_inputs(seed=0) -> ps.StudyInputs:
    rng = np.random.default_rng(seed)
    linear_specs = [{"classifiers": 4, "samples": 10, "dim": d, "classes": 5, "sample_interval": si,
                     "param_interval": [-1, 1]} for d, si in ((2, [-1, 1]), (20, [-1, 1]), (2, [-10, 10]))]
    random_specs = [{"samples": 10, "dim": d, "mlps": 4, "hidden": [10, 10, 10], "classes": 5, "sample_interval": si,
                     "param_interval": [-1, 1], **extra}
                    for d, si, extra in ((2, [-1, 1], {}), (2, [-100, 100], {"eps_max": 1000.0}), (20, [-1, 1], {}))]
    return ps.StudyInputs(
        linear_specs=linear_specs,
        linear_frames=[_linear_frame(rng, i, s, 100.0) for i, s in enumerate(linear_specs, 1)],
        linear_eps_max=100.0,
        random_specs=random_specs,
        random_frames=[_mlp_frame(rng, i, s, float(s.get("eps_max", 10.0))) for i, s in enumerate(random_specs, 1)],
        random_eps_max=10.0,
        trained_frames={d: _mlp_frame(rng, 1, {"mlps": 1, "samples": 40, "dim": dim, "sample_interval": [-1, 1]},
                                      100.0).assign(dataset=d)
                        for d, dim in (("iris", 4), ("wine", 13))},
        trained_eps_max=100.0,
        networks=[_cnn_entry(rng, "LeNet-5")],
        lrn_networks=[_cnn_entry(rng, "LeNet-LRN1"), _cnn_entry(rng, "LeNet-LRN2")],
        cnn_eps_max=100.0,
    )


def published_with(inputs: ps.StudyInputs, truth: Protocol) -> dict:
    """paper_values-style tables made by ``truth`` from ``inputs``: what a thesis run with that
    protocol would have printed."""
    from advbounds.report.comparisons import TABLE_SPECS

    paper = {}
    for table in ps.TABLES:
        ours = ps.candidate_table(table, truth.for_table(table), inputs)
        spec = TABLE_SPECS[table]
        names = {col: ps_name for col in ours.columns
                 for ps_name in [_published_name(col, spec)] if ps_name is not None}
        columns = [spec.key, *spec.result_columns]
        key_column = next(c for c, n in names.items() if n == spec.key)
        rows = [[row[key_column], *[float(row[c]) for result in spec.result_columns
                                    for c, n in names.items() if n == result]]
                for row in ours.to_dict("records")]
        paper[table] = {"columns": columns, "rows": rows}
    return paper


def _published_name(column: str, spec) -> str | None:
    from advbounds.report.compare import normalize_name

    name = normalize_name(column)
    name = {normalize_name(k): normalize_name(v) for k, v in spec.aliases.items()}.get(name, name)
    return name if name in (spec.key, *spec.result_columns) else None


FAMILY = ProtocolFamily(eps_max=(None, 1.0, 2.0), eps_max_scale=("absolute", "half_width"), halvings=(None, 0, 3),
                        returned=("upper", "midpoint"), population=("flipped", "all"),
                        bound_unit=("pixels", "scaled"), explained_fraction=0.5)


@pytest.mark.parametrize("truth", [
    Protocol(eps_max=1.0, eps_max_scale="half_width", halvings=3, returned="midpoint", population="all",
             bound_unit="scaled"),
    Protocol(eps_max=2.0, eps_max_scale="half_width", halvings=0, population="flipped", bound_unit="pixels"),
])
def test_the_study_recovers_the_protocol_that_made_the_numbers(truth):
    inputs = synthetic_inputs()
    result = ps.run_study(inputs, FAMILY, published_with(inputs, truth), REPORT)
    assert result.best == truth
    assert result.explained(truth) == list(ps.TABLES)
    total = result.fit(truth).set_index("table").loc["total"]
    assert total["within_tolerance"] == total["cells"] > 0
    # the stated protocol does not make these numbers
    assert result.fit(STATED).set_index("table").loc["total", "within_tolerance"] < total["cells"]
    verdicts = ps.best_reading_verdicts(result)
    assert (verdicts["best_verdict"] == "reproduced").all() and (verdicts["best_reading"] == truth.label).all()
    assert set(verdicts["item"]) == set(ps.TABLES) and (verdicts["stated_verdict"] != "reproduced").any()
    assert "One reading explains 6 of the 6 tables" in ps.conclusion(result)


def test_the_stated_protocol_reproduces_the_main_run_itself():
    inputs = synthetic_inputs(seed=1)
    stated_tables = {t: ps.candidate_table(t, STATED, inputs) for t in ps.TABLES}
    from advbounds.experiments import linear

    main = linear.table_3_1(inputs.linear_specs, inputs.linear_frames, atol=1e-9, optimal_rtol=1e-4)
    pd.testing.assert_frame_equal(stated_tables["table_3_1"][["Mean", "Median", "Std"]], main[["Mean", "Median", "Std"]])


def test_every_reading_runs_and_is_written(tmp_path):
    """Every reading of a family with two values per dimension (the config's whole family runs in
    the smoke workflow, tests/test_workflow_ch5.py)."""
    family = replace(FAMILY, eps_max=(None, 100.0))
    inputs = synthetic_inputs(seed=2)
    from advbounds.report.sources import load_paper_values

    paper = load_paper_values(REPO / "reference/paper_values.yaml")
    paths = [tmp_path / f"protocol_study.{ext}" for ext in ("csv", "md", "tex")]
    result = ps.write_study(inputs, family, paper, REPORT, [str(p) for p in paths])
    totals = result.fits[result.fits["table"] == "total"]
    assert len(totals) == len(family.readings())
    cells = pd.read_csv(paths[0])
    for table in ps.TABLES:
        seen = {r.for_table(table).label for r in family.readings()}
        assert set(cells.loc[cells["table"] == table, "reading"]) == seen
    page = paths[1].read_text()
    assert "**Conclusion.**" in page and STATED.label in page
    assert "\\begin{tabular}" in paths[2].read_text()
    # a reading above the main run's M is missing, never silently fitted
    above = cells[(cells["table"] == "table_4_2") & (cells["eps_max"] == 100.0) & (cells["eps_max_scale"] == "absolute")]
    assert not above.empty and (above["verdict"] == "missing").any()


def test_monotonicity_check_against_a_real_small_m_search():
    frame = pd.DataFrame({"fgs_eps": [0.2, 0.9, 3.0, np.nan], "ref_flipped": [True, True, False, False],
                          "ref_eps": [0.2, 0.9000001, np.nan, np.nan]})
    check = ps.monotonicity_check([frame], 1.0)
    assert check["samples"] == 4 and check["flip_agreement"] == 1.0
    assert check["max_eps_difference"] == pytest.approx(1e-7)
    broken = frame.assign(ref_flipped=[True, False, True, False])
    assert ps.monotonicity_check([broken], 1.0)["flip_agreement"] == 0.5


def test_bad_inputs_get_a_clear_error():
    empty = replace(synthetic_inputs(), linear_frames=[], random_frames=[], trained_frames={}, networks=[],
                    lrn_networks=[])
    with pytest.raises(ValueError, match="no table to fit"):
        ps.run_study(empty, FAMILY, {}, REPORT)
    with pytest.raises(KeyError, match="no table"):
        ps.candidate_table("table_9_9", STATED, synthetic_inputs())
    settings = {"chapter3": {"tests": [{}]}, "chapter4": {"tests": [], "datasets": []}, "chapter5": {}}
    with pytest.raises(ValueError, match="number of per-sample files"):
        ps.load_inputs(settings, linear=[], random_mlp=[], trained=[], networks={}, lrn_networks={})


def test_the_study_reads_back_from_its_csv(tmp_path):
    """The report's hook: the best reading and its verdicts from figures/protocol_study.csv alone."""
    inputs = synthetic_inputs()
    truth = Protocol(eps_max=1.0, halvings=3, returned="midpoint")
    path = tmp_path / "protocol_study.csv"
    result = ps.write_study(inputs, FAMILY, published_with(inputs, truth), REPORT, [str(path)])
    again = ps.study_from_cells(pd.read_csv(path), FAMILY)
    assert again.best == result.best == truth
    pd.testing.assert_frame_equal(ps.best_reading_verdicts(again), ps.best_reading_verdicts(result),
                                  check_dtype=False)
    with pytest.raises(ValueError, match="another family"):
        ps.study_from_cells(pd.read_csv(path), replace(FAMILY, halvings=(None, 5)))


def test_a_real_search_with_the_readings_m_is_used_instead_of_a_cut():
    """Chapter 4's reference search (M = 1) is the base of an M = 1 reading: the Table 4.3 it gives
    is the main table's own "Ref" columns, even where the label flips back along the ray."""
    from advbounds.experiments import mlp_summary

    rng = np.random.default_rng(3)
    frames = {}
    for name in ("iris", "wine"):
        frame = _mlp_frame(rng, 1, {"mlps": 1, "samples": 30, "dim": 4, "sample_interval": [-1, 1]}, 100.0)
        # non-monotone samples: the [0, 1] search finds an earlier crossing than the [0, 100] one
        ref_eps = np.where(frame["fgs_eps"] <= 1.0, frame["fgs_eps"] * rng.uniform(0.3, 1.0, len(frame)), np.nan)
        frame = frame.assign(ref_eps=ref_eps, ref_flipped=np.isfinite(ref_eps), ref_norm=ref_eps * 2.0)
        frames[name] = frame.assign(ref_deviation=frame["ref_norm"] - frame["bound"])
    inputs = replace(synthetic_inputs(), trained_frames=frames, reference_eps_max=1.0)
    main = mlp_summary.table_4_3(frames, atol=1e-9)
    reading = ps.candidate_table("table_4_3", Protocol(eps_max=1.0), inputs)
    np.testing.assert_allclose(reading[["Mean", "Median", "Std", "Min", "Max"]].to_numpy(),
                               main[["Ref mean", "Ref median", "Ref std", "Ref min", "Ref max"]].to_numpy())
    cut = ps.candidate_table("table_4_3", Protocol(eps_max=2.0), inputs)
    assert not np.allclose(cut["Mean"], reading["Mean"])

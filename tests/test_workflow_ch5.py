"""Chapter 5 end to end: the smoke config's `chapter5` target in a temporary copy of the repository.

One session-scoped Snakemake run (tiny synthetic MNIST/CIFAR-10, a few training iterations, a 10 %
width CIFAR-NIN) through the same rules as the thesis run; the tests then check that every
artifact exists and holds sane values.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import smoke_support
import yaml
from smoke_support import assert_tables_written, figures_table

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
CH5 = SMOKE["chapter5"]
MODELS = list(CH5["models"])

TABLES = ["table_5_1", "table_5_2", "table_5_3"]
FIGURES = ["figure_5_1", "figure_5_3", "figure_5_8", "figure_5_9", "figure_5_10", "figure_5_11", "figure_5_12",
           "figure_5_13", "figure_2_5"] + [f"figure_2_5_{m}" for m in CH5["figures"]["figure_2_5"]["extra_models"]]
DATA_FILES = ["figure_5_10_counts.csv", "figure_5_12.csv", "figure_5_13.csv"]


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """The whole smoke DAG, run once per test session and shared by every workflow test."""
    return smoke_support.smoke_run(tmp_path_factory).path


def test_every_artifact_exists(run):
    assert_tables_written(run, TABLES)
    for name in TABLES:
        assert "Table 5." in (run / "figures" / f"{name}.md").read_text()
    for name in FIGURES:
        pdf, png = run / "figures" / f"{name}.pdf", run / "figures" / f"{name}.png"
        assert pdf.read_bytes()[:4] == b"%PDF", pdf
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, png
    for name in DATA_FILES:
        assert (run / "figures" / name).stat().st_size > 50
    for model in MODELS:
        for path in (f"results/models/{model}.pt", f"results/models/{model}.metrics.json",
                     f"results/bounds/{model}.csv", f"results/attacks/{model}.csv"):
            assert (run / path).is_file(), path
        for rule in ("ch5_train", "ch5_bounds", "ch5_attack"):
            bench = pd.read_csv(run / "logs" / "benchmarks" / rule / f"{model}.tsv", sep="\t")
            assert bench["s"].iloc[0] > 0
    assert (run / "results" / "provenance" / "figures" / "table_5_1.csv.json").is_file()


def test_models_trained_as_configured(run):
    for model in MODELS:
        metrics = json.loads((run / f"results/models/{model}.metrics.json").read_text())
        spec = CH5["models"][model]
        assert metrics["iterations"] == spec["training"]["iterations"]
        assert metrics["builder"] == spec["builder"] and metrics["dataset"] == spec["dataset"]
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert metrics["input_shape"] == ([1, 28, 28] if spec["dataset"] == "mnist" else [3, 32, 32])
        assert len(metrics["classes"]) == 10


def test_per_sample_bounds_and_attacks_cover_the_test_set(run):
    sizes = SMOKE["datasets"]["synthetic_sizes"]
    for model in MODELS:
        n_test = sizes["mnist_test" if CH5["models"][model]["dataset"] == "mnist" else "cifar10_test"]
        bounds = pd.read_csv(run / f"results/bounds/{model}.csv")
        attacks = pd.read_csv(run / f"results/attacks/{model}.csv")
        assert len(bounds) == len(attacks) == n_test
        assert bounds["sample"].tolist() == list(range(n_test)) == attacks["sample"].tolist()
        kappas = [c for c in bounds.columns if c.startswith("kappa_")]
        assert len(kappas) >= 6
        values = bounds[["bound", *kappas]].to_numpy()
        assert (values > 0).all() and pd.notna(values).all() and (values < math.inf).all()
        assert (bounds["bound"] == bounds[kappas[0]]).all()  # the input-level bound is the first kappa
        assert (bounds["pred_label"] == attacks["orig_label"]).all()
        flipped = attacks["flipped"].astype(bool)
        assert ((attacks.loc[flipped, "eps"] > 0) & (attacks.loc[flipped, "eps"] <= CH5["attack"]["eps_max"])).all()
        assert attacks.loc[~flipped, "eps"].isna().all()
        assert (attacks.loc[flipped, "adv_label"] != attacks.loc[flipped, "orig_label"]).all()
        if model.startswith("lenet"):
            assert {"kappa_conv1", "kappa_pool1", "kappa_conv2", "kappa_pool2", "kappa_ip1", "kappa_ip2"} <= set(kappas)


def test_table_5_1_normalizations(run):
    t = figures_table(run, "table_5_1").set_index("network")
    assert list(t.index) == ["LeNet-5", "CIFAR-NIN"]
    for network, channels in (("LeNet-5", 1), ("CIFAR-NIN", 3)):
        row = t.loc[network]
        for kind in ("theoretical", "empirical"):
            per_pixel, per_input = row[f"normalized_{kind}_bound_per_pixel"], row[f"normalized_{kind}_bound_per_input"]
            assert per_pixel > 0 and per_pixel == pytest.approx(channels * per_input)
        assert 0 <= row["rate"] <= 1
        assert row["normalized_theoretical_bound_per_pixel"] < row["normalized_empirical_bound_per_pixel"]
    # the table is computed from the per-sample files
    attacks = pd.read_csv(run / "results/attacks/cifar_nin.csv")
    flipped = attacks["flipped"].astype(bool)
    assert t.loc["CIFAR-NIN", "rate"] == pytest.approx(flipped.mean())
    assert t.loc["CIFAR-NIN", "normalized_empirical_bound_per_pixel"] == pytest.approx(
        attacks.loc[flipped, "perturbation_norm"].mean() / 1024)


def test_tables_5_2_and_5_3(run):
    t2 = figures_table(run, "table_5_2").set_index("network")
    assert list(t2.index) == ["LeNet-5", "CIFAR-NIN"]
    assert ((t2["min"] <= t2["median"]) & (t2["median"] <= t2["max"]) & (t2["max"] <= 100)).all()
    assert (t2["min_perturbation_norm"] > 0).all()
    t3 = figures_table(run, "table_5_3")
    assert t3["network"].tolist() == ["LeNet-LRN1", "LeNet-LRN2", "LeNet-LRN3", "LeNet-5", "LeNet-5 (Adam)"]
    assert t3["accuracy"].between(0, 1).all() and t3["rate"].between(0, 1).all()
    lenet = t3.set_index("network").loc["LeNet-5"]
    assert lenet["mean"] == pytest.approx(t2.loc["LeNet-5", "mean"])


def test_figure_data(run):
    counts = pd.read_csv(run / "figures/figure_5_10_counts.csv")
    sizes = SMOKE["datasets"]["synthetic_sizes"]
    assert counts.groupby("network")["count"].sum().to_dict() == {"LeNet-5": sizes["mnist_test"],
                                                                  "CIFAR-NIN": sizes["cifar10_test"]}
    f12 = pd.read_csv(run / "figures/figure_5_12.csv").set_index("n")
    assert f12.loc[4, "analytic_gain"] == pytest.approx(1.524, abs=1e-3)
    assert f12.loc[0, "ratio_median"] == pytest.approx(1.0)
    assert f12.loc[[1, 2], "ratio_median"].notna().all() and f12.loc[3, "ratio_median"] != f12.loc[3, "ratio_median"]
    f13 = pd.read_csv(run / "figures/figure_5_13.csv").set_index("L")
    settings = CH5["figures"]["figure_5_13"]
    assert f13.loc[1, "analytic_gain"] == pytest.approx(1 + settings["delta"] / settings["kappa_L"])
    layers = settings["layers"]
    assert f13["layer"].dropna().tolist() == layers[::-1]
    assert f13["gain_median"].dropna().is_monotonic_increasing


def test_protocol_study_fits_every_reading_of_the_family(run):
    """figures/protocol_study.*: every reading of the smoke config's family (the thesis run's) ran on
    this run's own per-sample results, and its stated reading is the main run's own table."""
    from advbounds.experiments import protocol

    family = protocol.ProtocolFamily.from_config(SMOKE["protocol_study"])
    cells = pd.read_csv(run / "figures/protocol_study.csv")
    for name in protocol.TABLES:
        seen = {reading.for_table(name).label for reading in family.readings()}
        assert set(cells.loc[cells["table"] == name, "reading"]) == seen, name
    stated = cells[(cells["table"] == "table_5_2") & (cells["reading"] == protocol.STATED.for_table("table_5_2").label)]
    ours = figures_table(run, "table_5_2").set_index("network")
    lenet_mean = stated.loc[stated["quantity"] == "LeNet-5 / mean", "ours"].iloc[0]
    assert lenet_mean == pytest.approx(ours.loc["LeNet-5", "mean"])
    page = (run / "figures/protocol_study.md").read_text()
    assert "**Conclusion.**" in page and protocol.STATED.label in page


def test_a_second_run_has_nothing_to_do(run):
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", "config/smoke.yaml", "--",
           "chapter5"]
    done = subprocess.run(cmd, cwd=run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Nothing to be done" in done.stdout + done.stderr

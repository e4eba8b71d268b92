"""Chapters 3 and 4 end to end: the smoke config's `chapter3` and `chapter4` targets in a temporary
copy of the repository.

One session-scoped Snakemake run (tiny random tests, Iris / Wine / synthetic Spambase MLPs trained for
a few iterations, a two-point regularization sweep) through the same rules as the thesis run; the
tests then check that every artifact exists and holds sane values: the expected rows and columns,
finite statistics, no bound violations, deviations >= 0 and accuracies / rates in [0, 1].
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import smoke_support
import yaml
from smoke_support import assert_tables_written, figures_table

from advbounds.report.catalog import BY_LABEL
from advbounds.report.compare import VERDICTS

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
CH3, CH4 = SMOKE["chapter3"], SMOKE["chapter4"]
DATASETS = list(CH4["trained"]["datasets"])

TABLES = ["table_3_1", "table_4_1", "table_4_2", "table_4_3", "section_4_3_2", "comparison_chapters34"]
FIGURES = ["figure_2_1", "figure_3_1", "figure_3_2", "figure_4_1", "figure_4_2", "figure_4_3"]
TARGETS = ["chapter3", "chapter4"]


def snakemake(work: Path, *targets: str, flags: tuple[str, ...] = (), timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *flags, "--configfile", "config/smoke.yaml", "--",
           *targets]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """The whole smoke DAG, run once per test session and shared by every workflow test."""
    return smoke_support.smoke_run(tmp_path_factory).path


def finite(values) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=float)).all())


def flipped_count(cell: str) -> tuple[int, int]:
    done, total = (int(v) for v in str(cell).split("/"))
    return done, total


def test_every_artifact_exists(run):
    assert_tables_written(run, TABLES)
    for name in FIGURES:
        for ext in ("pdf", "png"):
            path = run / "figures" / f"{name}.{ext}"
            assert path.stat().st_size > 1000, path
    assert (run / "figures" / "figure_4_3.csv").stat().st_size > 100


def test_table_3_1(run):
    t = figures_table(run, "table_3_1")
    assert list(t["No."]) == list(range(1, len(CH3["tests"]) + 1))
    assert list(t["Dim"]) == [spec["dim"] for spec in CH3["tests"]]
    assert list(t["Classes"]) == [spec["classes"] for spec in CH3["tests"]]
    assert (t["Violations"] == 0).all() and (t["Exact violations"] == 0).all()
    for cell, spec in zip(t["Flipped"], CH3["tests"]):
        done, total = flipped_count(cell)
        assert total == spec["classifiers"] * spec["samples"] and 0 < done <= total
    assert finite(t[["Mean", "Median", "Exact - bound mean", "FGS - exact mean"]])
    assert (t["Mean"] >= 0).all() and (t["FGS optimal"].between(0, 1)).all()
    for k, spec in enumerate(CH3["tests"], start=1):
        frame = pd.read_csv(run / "results" / "linear" / f"test_{k}.csv")
        assert len(frame) == spec["classifiers"] * spec["samples"]
        flipped = frame[frame["fgs_flipped"]]
        assert (flipped["deviation"] >= -CH3["violation_atol"]).all()
        assert (frame["exact_minus_bound"] >= -CH3["violation_atol"]).all()
    example = json.loads((run / "results" / "linear" / "figure_3_1.json").read_text())
    assert example["q_norm"] >= example["r_norm"] - 1e-9


def test_table_4_1(run):
    t = figures_table(run, "table_4_1").set_index("Activation")
    assert list(t.index) == ["sigm", "tanh", "softplus", "ReLU"]
    assert finite(t[["First-order (numeric)", "Second-order (numeric)", "Second-order (analytic)"]])
    np.testing.assert_allclose(t["Second-order (numeric)"], t["Second-order (analytic)"], atol=1e-6)
    assert (t["Used - numeric"] >= -1e-6).all()  # the bounds never under-estimate |g'| or |g''|


def test_table_4_2(run):
    t = figures_table(run, "table_4_2")
    tests = CH4["random_mlp"]["tests"]
    assert list(t["No."]) == list(range(1, len(tests) + 1))
    assert list(t["Layers"]) == [len(spec["hidden"]) for spec in tests]
    assert (t["Violations"] == 0).all()
    for cell, spec in zip(t["Flipped"], tests):
        done, total = flipped_count(cell)
        assert total == spec["mlps"] * spec["samples"] and 0 <= done <= total
    assert (t["Mean"].dropna() >= 0).all()
    for k, spec in enumerate(tests, start=1):
        frame = pd.read_csv(run / "results" / "random_mlp" / f"test_{k}.csv")
        assert len(frame) == spec["mlps"] * spec["samples"]
        assert finite(frame["bound"]) and (frame["bound"] >= 0).all() and (frame["M"] > 0).all()
        assert (frame.loc[frame["fgs_flipped"], "deviation"] >= -CH4["violation_atol"]).all()
        assert (frame.loc[frame["ref_flipped"], "ref_deviation"] >= -CH4["violation_atol"]).all()


def test_trained_mlps(run):
    from advbounds.training import load_model, load_model_record

    acc = figures_table(run, "section_4_3_2")
    assert list(acc["Dataset"]) == ["Iris", "Wine", "Spambase"][: len(DATASETS)]
    for column in ("Train accuracy", "Validation accuracy", "Test accuracy"):
        assert acc[column].between(0, 1).all()
    for dataset in DATASETS:
        record = load_model_record(run / "results" / "models" / f"mlp_{dataset}.pt")
        assert record["kwargs"]["hidden"] == CH4["trained"]["datasets"][dataset]["hidden"]
        assert record["kwargs"]["activation"] == CH4["trained"]["activation"]
        load_model(run / "results" / "models" / f"mlp_{dataset}.pt")
        metrics = json.loads((run / "results" / "models" / f"mlp_{dataset}.metrics.json").read_text())
        assert 0 <= metrics["test_accuracy"] <= 1
    t = figures_table(run, "table_4_3")
    assert list(t["Dataset"]) == list(acc["Dataset"])
    assert (t["Violations"] == 0).all()
    for dataset in DATASETS:
        frame = pd.read_csv(run / "results" / "mlp" / f"{dataset}.csv")
        assert (frame.loc[frame["fgs_flipped"], "deviation"] >= -CH4["violation_atol"]).all()
        assert finite(frame["bound"])


def test_figure_4_3_data(run):
    data = pd.read_csv(run / "figures" / "figure_4_3.csv")
    assert len(data) == len(DATASETS) * len(CH4["regularization"]["ells"])
    assert sorted(set(data["ell"])) == sorted(float(e) for e in CH4["regularization"]["ells"])
    for column in ("accuracy", "fgs_error_rate", "fgv_error_rate"):
        assert data[column].between(0, 1).all(), column
    # l = 0 retrains the Table 4.3 model (same seed and settings): same test accuracy
    acc = figures_table(run, "section_4_3_2").set_index("Dataset")["Test accuracy"]
    for dataset in DATASETS:
        zero = data[(data["dataset"] == dataset) & (data["ell"] == 0)]
        if len(zero):
            name = {"iris": "Iris", "wine": "Wine", "spambase": "Spambase"}[dataset]
            assert zero["test_accuracy"].iloc[0] == pytest.approx(acc[name])


def test_comparison_table(run):
    t = figures_table(run, "comparison_chapters34")
    published = yaml.safe_load((ROOT / "reference" / "paper_values.yaml").read_text())
    expected = (3 * len(published["table_3_1"]["rows"]) + 3 * len(published["table_4_2"]["rows"])
                + 5 * len(published["table_4_3"]["rows"]) + len(published["trained_mlps"]))
    assert len(t) == expected
    assert finite(t["Published"])
    # every published row found its row in our tables (a tiny smoke test may flip no sample at all, so
    # only the tables whose smoke values are always defined must be finite)
    assert finite(t.loc[t["Item"].isin(["Table 3.1", "Section 4.3.2"]), "Ours"])
    assert set(t["Verdict"]) <= set(VERDICTS)
    assert set(t["Verdict (ref M)"].dropna()) <= set(VERDICTS)
    # the verdicts are the report's, number by number
    report = pd.read_csv(run / "results" / "report" / "verdicts.csv")
    report_verdicts = dict(zip(zip(report["item"], report["quantity"]), report["verdict"]))
    ours = {(BY_LABEL[item].key, quantity): verdict for item, quantity, verdict in
            zip(t["Item"], t["Quantity"], t["Verdict"])}
    assert ours == {key: report_verdicts[key] for key in ours}


def test_a_second_run_has_nothing_to_do(run):
    done = snakemake(run, *TARGETS, flags=("-n",), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Nothing to be done" in output, output[-4000:]

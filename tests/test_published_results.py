"""The published full-scale run (docs/results/, made by ``python -m advbounds.report.publish``)
names a commit of this repository and accounts for every artifact of the catalog."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from advbounds.report import publish

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "docs" / "results"


@pytest.fixture(scope="module")
def manifest() -> dict:
    if not (SNAPSHOT / publish.MANIFEST).exists():
        pytest.skip("no published run in docs/results")
    return json.loads((SNAPSHOT / publish.MANIFEST).read_text())


def test_the_snapshot_names_commits_of_this_repository(manifest):
    assert manifest["commits"]
    for commit in manifest["commits"]:
        sha = commit.removesuffix("-dirty")
        found = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=REPO, capture_output=True)
        assert found.returncode == 0, f"the snapshot names commit {sha}, which this repository does not hold"


def test_the_snapshot_accounts_for_every_catalog_artifact(manifest):
    present = {f for f in manifest["files"] if f.startswith("figures/")}
    expected = set(publish.expected_artifacts())
    assert expected <= present | set(manifest["missing"])
    assert set(manifest["missing"]) == expected - present
    if manifest["missing"]:
        assert manifest["note"], "the snapshot leaves artifacts out without saying why"
    for f in manifest["files"]:
        assert (SNAPSHOT / f).stat().st_size == manifest["files"][f], f
    assert sum(manifest["files"].values()) <= publish.MAX_BYTES


def test_publish_copies_a_run_and_refuses_an_unfinished_one(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    with pytest.raises(FileNotFoundError):
        publish.publish(run, tmp_path / "out")
    (run / "figures" / "report.html").write_text("<html></html>")
    (run / "figures" / "table_3_1.csv").write_text("a\n1\n")
    record = publish.publish(run, tmp_path / "out", note="tiny")
    assert set(record["files"]) == {"figures/report.html", "figures/table_3_1.csv"}
    assert "figures/table_3_1.md" in record["missing"] and record["note"] == "tiny"
    assert (tmp_path / "out" / "figures" / "table_3_1.csv").read_text() == "a\n1\n"


def test_the_documented_command_publishes(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "report.html").write_text("<html></html>")
    publish.main([str(run), str(tmp_path / "snapshot"), "--note", "no CIFAR-10"])
    assert "1 files" in capsys.readouterr().out
    assert json.loads((tmp_path / "snapshot" / publish.MANIFEST).read_text())["note"] == "no CIFAR-10"

"""The published full-scale run (docs/results/, made by ``python -m advbounds.report.publish``)
names a commit of this repository and accounts for every artifact of the catalog."""

from __future__ import annotations

import base64
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


def test_the_snapshot_page_links_the_pngs_it_embeds_and_keeps_the_others(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    figure, other = b"\x89PNG figure bytes", b"\x89PNG not in the snapshot"
    (run / "figures" / "figure_3_1.png").write_bytes(figure)
    embedded = [base64.b64encode(b).decode("ascii") for b in (figure, other)]
    page = "".join(f'<img src="data:image/png;base64,{e}">' for e in embedded)
    (run / "figures" / "report.html").write_text(f"<html>{page}</html>")
    record = publish.publish(run, tmp_path / "out")
    html = (tmp_path / "out" / "figures" / "report.html").read_text()
    assert '<img src="figure_3_1.png">' in html
    assert embedded[0] not in html and f"base64,{embedded[1]}" in html
    assert record["files"]["figures/report.html"] == len(html.encode())


def test_an_oversized_snapshot_is_refused_and_the_old_one_stays(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "report.html").write_text("<html></html>")
    publish.publish(run, tmp_path / "out", note="first")
    (tmp_path / "out" / "README.md").write_text("how the run was made")
    publish.publish(run, tmp_path / "out", note="first")
    assert (tmp_path / "out" / "README.md").read_text() == "how the run was made"  # a refresh keeps it
    (run / "figures" / "table_3_1.csv").write_text("a\n" + "1\n" * 100)
    monkeypatch.setattr(publish, "MAX_BYTES", 50)
    with pytest.raises(ValueError, match="over the"):
        publish.publish(run, tmp_path / "out", note="second")
    assert json.loads((tmp_path / "out" / publish.MANIFEST).read_text())["note"] == "first"
    assert not (tmp_path / "out" / "figures" / "table_3_1.csv").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"run", "out"}  # no temporary folder left behind


def test_the_manifest_names_the_commits_of_every_job_upstream_not_only_the_snapshot_files(tmp_path):
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "report.html").write_text("<html></html>")
    (run / "figures" / "table_5_1.csv").write_text("a\n1\n")
    records = {  # relpath: (commit, finished, inputs)
        "figures/table_5_1.csv": ("b" * 40, "2026-01-02T00:00:00+00:00", ["results/models/lenet5.pt"]),
        "results/models/lenet5.pt": ("a" * 40, "2026-01-01T00:00:00+00:00", []),  # upstream, not copied
        "results/models/stale.pt": ("c" * 40, "2025-01-01T00:00:00+00:00", []),  # upstream of nothing
    }
    for relpath, (commit, finished, inputs) in records.items():
        path = run / "results" / "provenance" / f"{relpath}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"git_commit": commit, "finished_at": finished, "device": "cpu",
                                    "rule": relpath, "inputs": inputs}))
    record = publish.publish(run, tmp_path / "out")
    assert record["commits"] == ["a" * 40, "b" * 40]
    assert record["finished"] == ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"]
    assert "results/models/lenet5.pt" not in record["files"]

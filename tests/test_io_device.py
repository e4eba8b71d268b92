"""Atomic writes, device resolution and job provenance."""

from __future__ import annotations

import json
import os
import stat
import types
from importlib import metadata
from pathlib import Path

import pytest
import torch

from advbounds.device import resolve_device
from advbounds.io import atomic_path, atomic_write, write_json
from advbounds.jobs import Job, provenance_path, run_job


def test_atomic_write_leaves_no_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_until_the_new_one_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json({"v": 1}, target)
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as handle:
            handle.write('{"v": ')
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"v": 1}


def test_atomic_path_renames_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "fig.png"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"png")
        assert not target.exists()
    assert target.read_bytes() == b"png"


@pytest.mark.parametrize("write", ["atomic_write", "atomic_path"])
def test_atomic_outputs_get_the_mode_a_plain_open_gives(tmp_path: Path, write: str) -> None:
    """mkstemp's 0600 must not leak into outputs that a group shares on a cluster."""
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.txt"
        if write == "atomic_write":
            with atomic_write(target) as handle:
                handle.write("x")
        else:
            with atomic_path(target) as tmp:
                tmp.write_text("x")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_resolve_device_auto_and_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback of a GPU-less machine")
def test_cuda_request_without_gpu_falls_back_to_cpu_with_a_warning() -> None:
    with pytest.warns(RuntimeWarning, match="no CUDA device"):
        assert resolve_device("cuda") == torch.device("cpu")


def test_resolve_device_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")


def _fake_snakemake(tmp_path: Path) -> types.SimpleNamespace:
    class Params(dict):
        pass

    out = tmp_path / "results" / "x.json"
    return types.SimpleNamespace(
        input=[], output=[str(out)], params=Params(seed=7, device="cpu", settings={"a": 1}),
        wildcards={"model": "m"}, log=[str(tmp_path / "logs" / "x.log")], threads=1, rule="demo",
    )


def test_run_job_seeds_logs_and_writes_provenance(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    snakemake = _fake_snakemake(tmp_path)

    def main(job: Job) -> float:
        assert job.settings == {"a": 1}
        print("hello from the job")
        write_json({"ok": True}, job.output[0])
        return torch.rand(1).item()

    first = run_job(snakemake, main)
    second = run_job(snakemake, main)
    assert first == second  # seeded from params.seed
    assert "hello from the job" in Path(snakemake.log[0]).read_text()
    record = json.loads(provenance_path(snakemake.output[0]).read_text())
    assert record["seed"] == 7 and record["device"] == "cpu" and record["rule"] == "demo"
    assert record["params"]["settings"] == {"a": 1}
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["runtime_s"] >= 0


def test_failed_job_writes_no_provenance(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    snakemake = _fake_snakemake(tmp_path)

    def main(job: Job) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        run_job(snakemake, main)
    assert not provenance_path(snakemake.output[0]).exists()
    assert "ValueError: boom" in Path(snakemake.log[0]).read_text()

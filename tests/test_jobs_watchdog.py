"""A job notices that the Snakemake run that started it was killed, and stops (advbounds.jobs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advbounds.jobs import snakemake_ancestors

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

JOB = """
import time, sys
from advbounds.jobs import watch_snakemake
assert watch_snakemake(poll_s=0.1) is not None, "no Snakemake ancestor found"
open(sys.argv[1], "w").write("started")
time.sleep(60)
"""
# stands in for snakemake: its command line names it, and it starts the job through a shell, as
# Snakemake's script jobs sit below a shell and a `python -m snakemake` subprocess
FAKE_SNAKEMAKE = """
import subprocess, sys, time
child = subprocess.Popen(["bash", "-c", f"{sys.executable} {sys.argv[1]} {sys.argv[2]}; echo done"])
open(sys.argv[3], "w").write(str(child.pid))
time.sleep(60)
"""


def _wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_job_stops_when_snakemake_is_killed(tmp_path):
    job, fake = tmp_path / "job.py", tmp_path / "fake_snakemake.py"
    job.write_text(JOB)
    fake.write_text(FAKE_SNAKEMAKE)
    started, shell_pid = tmp_path / "started", tmp_path / "shell.pid"
    parent = subprocess.Popen([sys.executable, str(fake), str(job), str(started), str(shell_pid)])
    try:
        _wait_for(started)
        _wait_for(shell_pid)
        job_pids = subprocess.run(["pgrep", "-P", shell_pid.read_text()], capture_output=True, text=True).stdout.split()
        assert len(job_pids) == 1
        job_pid = int(job_pids[0])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{job_pid}").exists() and time.monotonic() < deadline:
            fields = Path(f"/proc/{job_pid}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                break
            time.sleep(0.1)
        state = Path(f"/proc/{job_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] \
            if Path(f"/proc/{job_pid}").exists() else "gone"
        assert state in ("gone", "Z"), "the job ran on after Snakemake was killed"
    finally:
        subprocess.run(["pkill", "-f", str(job)], check=False)
        if parent.poll() is None:
            parent.kill()


def test_without_a_snakemake_ancestor_nothing_is_watched():
    """In a test or a notebook run_job must not exit when some unrelated process ends."""
    assert snakemake_ancestors() == []

"""A real single-node SLURM cluster for the tests (pytest fixtures).

:func:`start_cluster` writes a ``slurm.conf`` for this machine into a private folder and starts, as
children of the test process, ``munged`` (on a private socket with a private key), then
``slurmctld`` and ``slurmd`` on localhost (free ports, so a developer's own SLURM, or a second test
session, is never touched). :meth:`SlurmCluster.stop` cancels what is still queued, stops every
daemon it started by PID and removes the folder.

There is no accounting database (``accounting_storage/none``): ``sacct`` never answers, so
Snakemake's SLURM executor must poll with ``squeue`` (``--slurm-status-command squeue``);
``MinJobAge`` keeps finished jobs visible to ``squeue`` (and ``scontrol show job``) for 5 minutes.

Debian's ``slurm-wlm`` and ``munge`` are installed with apt-get when they are missing (only as
root, where apt works). Where SLURM cannot start the fixtures skip with the reason, except under
CI (``CI=true``), where a cluster that does not start is a test failure.

Clients (sbatch, squeue, scancel, scontrol, and the Snakemake process) find the cluster through
``SLURM_CONF``: use :attr:`SlurmCluster.env` as their environment.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "srun")
APT_PACKAGES = ("slurm-wlm", "munge")
START_TIMEOUT = 60


class SlurmUnavailable(RuntimeError):
    """SLURM cannot run here (not root, no package and no apt, or a daemon does not start)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _sbin(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name) if p.exists()), None)


def _missing() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if _sbin(name) is None]


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt-get where they are missing; raise SlurmUnavailable
    where that is impossible."""
    if not _missing():
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM is not installed ({', '.join(_missing())} missing) and the "
                               "tests do not run as root, so they cannot apt-get install it")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM is not installed ({', '.join(_missing())} missing) and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n"
                                   f"{(proc.stdout + proc.stderr)[-3000:]}")
    if _missing():
        raise SlurmUnavailable(f"after apt-get install {' '.join(APT_PACKAGES)}: {', '.join(_missing())} still missing")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _memory_mb() -> int:
    meminfo = Path("/proc/meminfo").read_text()
    total_kb = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M).group(1))
    # a little below the real total: slurmd drains a node that has less memory than configured
    return int(total_kb / 1024 * 0.95)


@dataclass
class SlurmCluster:
    root: Path
    name: str
    host: str
    cpus: int
    memory_mb: int
    gpus: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def ctld_log(self) -> Path:
        return self.root / "log" / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.root / "log" / "slurmd.log"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        # first on PATH, exported into the jobs: an srun that finds this cluster (see write_conf)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # a test process that itself runs inside a SLURM job must not leak that job's settings
        for key in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"]:
            del env[key]
        return env

    def run(self, *cmd: str, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}"
                               f"{self.log_tail()}")
        return proc

    def log_tail(self, n: int = 2500) -> str:
        out = ""
        for path in (self.root / "log").glob("*.log"):
            out += f"\n--- {path.name} ---\n{path.read_text(errors='replace')[-n:]}"
        return out

    def show_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (kept for MinJobAge seconds after the job ended)."""
        text = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout.strip()
        fields: dict[str, str] = {}
        # Key=Value pairs separated by spaces; a value may contain spaces only in Command/WorkDir-like
        # fields at the end, so split on " Key=" boundaries
        for match in re.finditer(r"(?:^|\s)([A-Za-z:/]+)=(.*?)(?=\s[A-Za-z:/]+=|$)", text):
            fields[match.group(1)] = match.group(2)
        return fields

    def job_ids(self) -> list[str]:
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i").stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def wait_for_state(self, job_id: str, states: set[str], timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("squeue", "--states=all", "--noheader", "--format=%T", "-j", str(job_id),
                             check=False).stdout.strip()
            if state in states:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"SLURM job {job_id} still {state!r} after {timeout} s (wanted {states})")

    # ------------------------------------------------------------------------------------------
    def write_conf(self, ctld_port: int, slurmd_port: int) -> None:
        for sub in ("bin", "etc", "state", "spool/slurmd", "log", "run", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Inside a job, snakemake-executor-plugin-slurm-jobstep (0.6.1) starts the job's step with
        # srun in an environment without SLURM_* variables, SLURM_CONF included: on a cluster
        # whose slurm.conf is not at the default path (like this one) srun would find no config.
        # Real clusters keep it at /etc/slurm or run configless; here a wrapper puts it back.
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="${{SLURM_CONF:-{self.conf}}}" exec {_sbin("srun")} "$@"\n')
        srun.chmod(0o755)
        gres_lines = ""
        node_gres = ""
        if self.gpus:
            # count-only GPUs (no device files): SLURM schedules them like real ones; the smoke
            # config's jobs run on the CPU anyway
            gres_lines = "GresTypes=gpu\n"
            node_gres = f" Gres=gpu:{self.gpus}"
            (self.root / "etc" / "gres.conf").write_text(
                f"AutoDetect=off\nNodeName={self.host} Name=gpu File=/dev/null Count={self.gpus}\n")
        r = self.root
        self.conf.write_text(f"""\
# written by tests/slurm_cluster.py for one test session
ClusterName={self.name}
SlurmctldHost={self.host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/slurmd
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to squeue / scontrol for 5 minutes (the plugin's squeue polling needs it)
MinJobAge=300
KillWait=5
InactiveLimit=0
SchedulerType=sched/backfill
{gres_lines}NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb}{node_gres} State=UNKNOWN
PartitionName=main Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "wb")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def _wait(self, what: str, ready, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {proc.returncode} while waiting for {what}"
                                           f"{self.log_tail()}")
            if ready():
                return
            time.sleep(0.3)
        raise SlurmUnavailable(f"timed out after {timeout} s waiting for {what}{self.log_tail()}")

    def start(self) -> None:
        munge_dir = self.root / "munge"
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        munge_dir.chmod(0o700)
        self._spawn("munged", [_sbin("munged"), "--force", "--foreground", f"--socket={munge_dir}/munge.socket",
                               f"--key-file={key}", f"--pid-file={munge_dir}/munged.pid",
                               f"--log-file={self.root}/log/munged.log", f"--seed-file={munge_dir}/munged.seed"])
        self._wait("munged's socket", lambda: (munge_dir / "munge.socket").exists())
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0)
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
        self._wait("the node to be idle", lambda: "idle" in self.run(
            "sinfo", "--noheader", "--format=%T", check=False).stdout)

    def stop(self) -> None:
        """Cancel whatever is still queued, stop the daemons this cluster started (by PID) and
        remove its folder."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--quiet", *self.job_ids(), check=False, timeout=30) \
                    if self.job_ids() else None
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and any(
                        s in self.run("squeue", "--noheader", "--format=%T", check=False, timeout=10).stdout
                        for s in ("RUNNING", "COMPLETING", "PENDING")):
                    time.sleep(0.5)
            except (subprocess.TimeoutExpired, RuntimeError, OSError):
                pass
        for name in reversed(DAEMONS):  # slurmd, slurmctld, then munged
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(name: str = "advbounds", gpus: int = 0) -> SlurmCluster:
    """Install (if needed) and start a single-node cluster; the caller must :meth:`~SlurmCluster.stop` it."""
    ensure_installed()
    cluster = SlurmCluster(root=Path(tempfile.mkdtemp(prefix=f"slurm-{name}-")), name=name,
                           host=socket.gethostname().split(".")[0], cpus=os.cpu_count() or 1,
                           memory_mb=_memory_mb(), gpus=gpus)
    try:
        cluster.write_conf(_free_port(), _free_port())
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _cluster_or_skip(name: str, gpus: int):
    try:
        return start_cluster(name, gpus=gpus)
    except (SlurmUnavailable, OSError, subprocess.SubprocessError, RuntimeError) as exc:
        if in_ci():
            pytest.fail(f"SLURM did not start (a failure under CI=true): {exc}", pytrace=False)
        pytest.skip(f"SLURM is not available: {exc}")


@pytest.fixture(scope="session")
def slurm_cluster():
    """A single-node cluster without GPUs (no GRES), as most CPU clusters are."""
    cluster = _cluster_or_skip("advcpu", gpus=0)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def slurm_gpu_cluster():
    """A single-node cluster whose node offers one (count-only) GPU through GRES."""
    cluster = _cluster_or_skip("advgpu", gpus=1)
    yield cluster
    cluster.stop()

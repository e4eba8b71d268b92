"""The glue every Snakemake script goes through.

``run_job(snakemake, main)`` turns the ``snakemake`` object of a ``script:`` directive into a
:class:`Job`, sends all output (logging, warnings, tqdm bars) to the rule's log file, seeds every
RNG, resolves the device (falling back to the CPU with a warning when no GPU is present), times the
job and, once ``main`` returned, writes a provenance record for each output under
``results/provenance/``. The module never imports snakemake; it only reads attributes of the object.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from advbounds.device import resolve_device, seed_everything
from advbounds.io import write_json

PROVENANCE_ROOT = Path("results/provenance")
_VERSIONED_PACKAGES = ("advbounds", "torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn",
                       "matplotlib", "snakemake")

log = logging.getLogger("advbounds")


@dataclass
class Job:
    """What a script needs from Snakemake, as plain Python values."""

    input: Any
    output: Any
    params: Mapping[str, Any]
    wildcards: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    threads: int = 1
    rule: str = "?"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: from the config, not the params: it changes how raw files are obtained, never what they are,
    #: so switching it must not rerun (and so delete) a downloaded dataset
    offline: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        """The config slice the rule passed as ``params.settings`` (empty if none)."""
        return dict(self.params.get("settings", {}) or {})


def run_job(snakemake: Any, main: Callable[[Job], Any]) -> Any:
    params = dict(snakemake.params.items()) if hasattr(snakemake.params, "items") else {}
    log_path = Path(snakemake.log[0]) if len(snakemake.log) else None
    job = Job(
        input=snakemake.input,
        output=snakemake.output,
        params=params,
        wildcards=dict(snakemake.wildcards.items()),
        log_path=log_path,
        threads=int(snakemake.threads),
        rule=str(snakemake.rule),
        # a job without a seed param reads no random numbers of its own; seeding with 0 keeps it
        # deterministic all the same
        seed=int(params.get("seed", 0)),
        offline=bool(getattr(snakemake, "config", {}).get("offline", False)),
    )
    watch_snakemake()
    with _redirect_output(log_path):
        torch.set_num_threads(max(1, job.threads))
        seed_everything(job.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            # only jobs whose results depend on the device receive it; the rest run on the CPU
            job.device = resolve_device(params.get("device", "cpu"))
        for warning in caught:
            log.warning("%s", warning.message)
        log.info("rule %s %s on %s, seed %d, %d thread(s)", job.rule, job.wildcards, job.device,
                 job.seed, job.threads)
        started = time.perf_counter()
        try:
            result = main(job)
        except BaseException:
            log.exception("rule %s failed", job.rule)
            raise
        runtime = time.perf_counter() - started
        log.info("done in %.1f s", runtime)
        record = provenance_record(job, runtime)
        for out in snakemake.output:
            write_json({**record, "output": str(out)}, provenance_path(out))
    return result


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state, parent pid, ...), or None when there is no such
    process. The name before them, in parentheses, may itself hold spaces and parentheses."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited already


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def snakemake_ancestors(pid: int | None = None) -> list[int]:
    """The processes between this one and the outermost Snakemake that (indirectly) started it,
    that one included; ``[]`` when no ancestor is Snakemake (a job called from a test or a notebook)
    or on a system without ``/proc``."""
    chain, current = [], os.getppid() if pid is None else pid
    while current and current > 1:
        chain.append(current)
        current = _parent_pid(current)
    outermost = max((i for i, p in enumerate(chain) if "snakemake" in _cmdline(p)), default=None)
    return [] if outermost is None else chain[: outermost + 1]


def watch_snakemake(poll_s: float = 2.0) -> threading.Thread | None:
    """End this job when the Snakemake run that started it is gone.

    A SIGKILLed ``snakemake`` cannot stop its jobs: they would run on as orphans, holding the CPU or
    GPU and writing results nobody waits for, while the next run stops at Snakemake's lock. A daemon
    thread polls the processes from here up to the outermost Snakemake and exits the job (status
    1) as soon as one of them is gone. Outputs are written atomically, so nothing half-written stays.
    Recovery of the lock itself: ``snakemake --unlock`` (README).
    """
    watched = snakemake_ancestors()
    if not watched:
        return None

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            gone = [pid for pid in watched if not _alive(pid)]
            if gone:
                log.error("the Snakemake process %d that started this job is gone: stopping the job", gone[0])
                logging.shutdown()
                os._exit(1)

    thread = threading.Thread(target=watch, name="watch-snakemake", daemon=True)
    thread.start()
    return thread


def provenance_path(output: str | Path) -> Path:
    """Where the provenance record of an output file lives."""
    return PROVENANCE_ROOT / f"{output}.json"


def provenance_record(job: Job, runtime_s: float) -> dict[str, Any]:
    return {
        "rule": job.rule,
        "wildcards": job.wildcards,
        # the job's input files: following them to their own records gives the full lineage
        # (every config slice, seed and runtime upstream of an artifact), which the report shows
        "inputs": [str(path) for path in (job.input or [])],
        "params": _plain(job.params),
        "seed": job.seed,
        "device": str(job.device),
        "device_name": torch.cuda.get_device_name(job.device) if job.device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": job.threads,
        "runtime_s": round(runtime_s, 3),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
    }


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    """The commit of the working tree, with ``-dirty`` when it has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@contextlib.contextmanager
def _redirect_output(log_path: Path | None):
    """Send stdout, stderr (tqdm) and logging of the job to its log file."""
    if log_path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", buffering=1) as handle:
        logging.basicConfig(level=logging.INFO, stream=handle, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.captureWarnings(True)
        with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
            yield

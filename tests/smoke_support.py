"""Shared machinery of the workflow tests (incremental, determinism, robustness, notebooks).

The smoke config runs in private copies of the repository (never in the checkout itself, so a test
run never touches a developer's results). :func:`smoke_run` runs the whole smoke DAG once per test
session (once for all pytest-xdist workers) and every test module shares it; tests that modify a
tree work on :func:`clone` copies of it.

``snakemake -n`` output is parsed into :class:`PlannedJob` records (rule, wildcards, outputs, reason),
and :func:`provenance_graph` reads the provenance records jobs.py wrote during the run: who produced
which file from which inputs. The tests use that record of what really happened to predict which
jobs a change must rerun, and compare the prediction with Snakemake's dry-run plan.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = "config/smoke.yaml"
#: generated or environment-specific paths a fresh copy must not carry (as in .gitignore); .git is
#: kept, so the jobs' provenance records the commit as it does in a checkout
TOP_LEVEL_EXCLUDES = {".venv", "results", "resources", "logs", ".snakemake", "benchmarks", ".pytest_cache",
                      ".hypothesis", "build", "dist"}
EVERYWHERE_EXCLUDES = {"__pycache__", ".ipynb_checkpoints"}
SNAKEMAKE_TIMEOUT = int(os.environ.get("ADVBOUNDS_SMOKE_TIMEOUT", "1500"))


def snakemake_cmd(*args: str, cores: int = 2, configfile: str | None = SMOKE_CONFIG) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores)]
    if configfile:
        # the "=" form: --configfile takes several values and would swallow a following target
        cmd.append(f"--configfile={configfile}")
    return cmd + list(args)


def run_snakemake(workdir: Path, *args: str, cores: int = 2, configfile: str | None = SMOKE_CONFIG,
                  timeout: int = SNAKEMAKE_TIMEOUT, check: bool = True,
                  env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_cmd(*args, cores=cores, configfile=configfile), cwd=workdir,
                          capture_output=True, text=True, timeout=timeout, env={**_env(), **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(_failure(workdir, args, proc))
    return proc


def _failure(workdir: Path, args: Sequence[str], proc: subprocess.CompletedProcess) -> str:
    return (f"snakemake {' '.join(args)} failed in {workdir} (exit {proc.returncode}):\n"
            + _tail(proc.stdout + "\n" + proc.stderr) + _failed_logs(workdir))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # one thread per job on the shared CI cores; plots without a display
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _tail(text: str, n: int = 6000) -> str:
    return text[-n:]


def _failed_logs(workdir: Path, n: int = 3000) -> str:
    logs = sorted((workdir / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-3:] \
        if (workdir / "logs").exists() else []
    return "".join(f"\n--- {p.relative_to(workdir)} ---\n{p.read_text(errors='replace')[-n:]}" for p in logs)


def load_smoke_config() -> dict[str, Any]:
    """config/config.yaml with config/smoke.yaml merged over it, key by key, as Snakemake does."""
    import yaml

    def merge(base: dict, over: Mapping) -> dict:
        for key, value in over.items():
            base[key] = merge(dict(base.get(key) or {}), value) if isinstance(value, Mapping) and \
                isinstance(base.get(key), Mapping) else value
        return base

    return merge(yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
                 yaml.safe_load((REPO / SMOKE_CONFIG).read_text()))


def copy_repo(dest: Path) -> Path:
    """A fresh copy of the repository's sources (what git would see), without generated files:
    no results, downloads, logs, Snakemake metadata or rendered figures."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder).resolve()
        skipped = {n for n in names if n in EVERYWHERE_EXCLUDES or n.endswith(".egg-info")}
        if here == REPO:
            skipped |= TOP_LEVEL_EXCLUDES & set(names)
        elif here == REPO / "figures":
            skipped |= {n for n in names if n != "README.md"}
        return skipped

    shutil.copytree(REPO, dest, ignore=ignore, dirs_exist_ok=True, symlinks=True)
    return dest


def clone(tree: Path, dest: Path) -> Path:
    """A copy of a completed run: results, figures, .snakemake metadata and mtimes preserved."""
    shutil.copytree(tree, dest, dirs_exist_ok=True, symlinks=True, copy_function=shutil.copy2)
    return dest


@dataclass
class SmokeRun:
    path: Path
    seconds: float
    stdout: str


_CACHE: dict[str, SmokeRun] = {}


def smoke_run(tmp_path_factory: Any, name: str = "smoke", targets: Sequence[str] = ()) -> SmokeRun:
    """The smoke DAG (all of it, or what ``targets`` need), run once per test session per ``name``:
    ``smoke`` is the complete run every workflow test shares; the determinism test asks for a
    second, independent run of the tables."""
    if name not in _CACHE and name == "smoke" and os.environ.get("ADVBOUNDS_SMOKE_TREE"):
        # development shortcut: reuse a completed smoke run (e.g. a previous test session's tree);
        # tests never modify it (the ones that change files work on clones)
        tree = Path(os.environ["ADVBOUNDS_SMOKE_TREE"]).resolve()
        assert (tree / "figures" / "report.html").exists(), f"{tree} holds no completed smoke run"
        _CACHE[name] = SmokeRun(tree, 0.0, "")
    if name not in _CACHE:
        _CACHE[name] = _run_once_per_session(tmp_path_factory, name, targets)
    return _CACHE[name]


def _run_once_per_session(tmp_path_factory: Any, name: str, targets: Sequence[str]) -> SmokeRun:
    """Run the smoke DAG into ``<session temp root>/<name>``, once for all pytest-xdist workers.

    Under xdist every worker is its own process with its own temp folder, all inside one session
    folder; the first worker to ask runs the DAG while holding a lock there, and the others wait
    for it and read its record, instead of running the same DAG twice on CI's two cores.
    A failed run is recorded too, so that every test that needs it fails with the same message.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session folder that every worker's temp folder lies in
    tree, record = root / f"shared-{name}", root / f"shared-{name}.json"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not record.exists():
            copy_repo(tree)
            args = ["--", *targets] if targets else []
            started = time.perf_counter()
            proc = run_snakemake(tree, *args, check=False)
            record.write_text(json.dumps({
                "seconds": time.perf_counter() - started, "output": proc.stdout + proc.stderr,
                "failure": _failure(tree, args, proc) if proc.returncode else None}))
    run = json.loads(record.read_text())
    if run["failure"]:
        raise AssertionError(run["failure"])
    return SmokeRun(tree, run["seconds"], run["output"])


# ------------------------------------------------------------------------------------------------
# dry-run plans
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: tuple[tuple[str, str], ...] = ()
    output: tuple[str, ...] = ()
    reason: str = ""

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.rule, self.wildcards)


_RULE_LINE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\S+):\s*$")
_FIELD_LINE = re.compile(r"^\s+(input|output|log|jobid|reason|wildcards|resources|benchmark|threads): ?(.*)$")


def parse_dry_run(text: str) -> list[PlannedJob]:
    """The jobs of a ``snakemake -n`` run: every ``rule <name>:`` block with its fields."""
    jobs: list[PlannedJob] = []
    current: dict[str, Any] | None = None

    def flush() -> None:
        if current is not None:
            wildcards = tuple(sorted(
                tuple(part.split("=", 1)) for part in _split_list(current.get("wildcards", "")) if "=" in part))
            jobs.append(PlannedJob(current["rule"], wildcards, tuple(_split_list(current.get("output", ""))),
                                   current.get("reason", "")))

    for line in text.splitlines():
        match = _RULE_LINE.match(line)
        if match:
            flush()
            current = {"rule": match.group(1)}
            continue
        field_match = _FIELD_LINE.match(line)
        if current is not None and field_match:
            current[field_match.group(1)] = field_match.group(2).strip()
        elif current is not None and not line.strip():
            flush()
            current = None
    flush()
    return jobs


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(", ") if part.strip()]


def dry_run(workdir: Path, *args: str, configfile: str | None = SMOKE_CONFIG,
            env: Mapping[str, str] | None = None) -> list[PlannedJob]:
    proc = run_snakemake(workdir, "-n", "--quiet=host", *args, cores=1, configfile=configfile, timeout=600, env=env)
    return parse_dry_run(proc.stdout + "\n" + proc.stderr)


_RULE_HEAD = re.compile(r"^\s*rule (\w+):|^\s*rule:\s*$|^use rule (\w+) as (\w+)", re.M)


def rule_scripts(repo: Path) -> dict[str, str]:
    """Rule name -> its script's file name in workflow/scripts/, read from the rule files (a rule
    named in a loop, ``name: f"fetch_{_dataset}"``, counts for each dataset; ``use rule A as B``
    inherits A's script)."""
    scripts: dict[str, str] = {}
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        heads = list(_RULE_HEAD.finditer(text))
        for i, head in enumerate(heads):
            block = text[head.end(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
            if head.group(2):
                if head.group(2) in scripts:
                    scripts[head.group(3)] = scripts[head.group(2)]
                continue
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', block)
            if not script:
                continue
            if head.group(1):
                scripts[head.group(1)] = script.group(1)
            else:
                name = re.search(r'name:\s*\n\s*f"(\w+)_\{_dataset\}"', block)
                for dataset in re.findall(r'"(\w+)"', text[text.rfind("for _dataset in", 0, head.start()):head.start()]):
                    scripts[f"{name.group(1)}_{dataset}"] = script.group(1)
    return scripts


def job_keys(jobs: Iterable[PlannedJob], skip: Sequence[str] = ("all",)) -> set[tuple]:
    return {job.key for job in jobs if job.rule not in skip}


# ------------------------------------------------------------------------------------------------
# what the run actually did (provenance)
# ------------------------------------------------------------------------------------------------


@dataclass
class ProvenanceGraph:
    producer: dict[str, tuple] = field(default_factory=dict)  # output path -> job key
    inputs: dict[tuple, set[str]] = field(default_factory=dict)  # job key -> input paths
    params: dict[tuple, Mapping[str, Any]] = field(default_factory=dict)

    def consumers(self, path: str) -> set[tuple]:
        return {job for job, ins in self.inputs.items() if path in ins}

    def outputs(self, job: tuple) -> set[str]:
        return {path for path, producer in self.producer.items() if producer == job}

    def downstream(self, jobs: Iterable[tuple]) -> set[tuple]:
        """Every job that (transitively) reads an output of ``jobs``, not counting ``jobs`` themselves."""
        seen: set[tuple] = set()
        frontier = list(jobs)
        while frontier:
            job = frontier.pop()
            for path in self.outputs(job):
                for consumer in self.consumers(path):
                    if consumer not in seen:
                        seen.add(consumer)
                        frontier.append(consumer)
        return seen - set(jobs)

    def upstream(self, path: str) -> set[tuple]:
        """Every job whose output (transitively) feeds ``path``, the producer of ``path`` included."""
        seen: set[tuple] = set()
        frontier = [path]
        while frontier:
            current = frontier.pop()
            job = self.producer.get(current)
            if job is None or job in seen:
                continue
            seen.add(job)
            frontier.extend(self.inputs.get(job, ()))
        return seen

    def jobs_of_rule(self, rule: str) -> set[tuple]:
        return {job for job in self.inputs if job[0] == rule}


def provenance_graph(tree: Path) -> ProvenanceGraph:
    graph = ProvenanceGraph()
    root = tree / "results" / "provenance"
    for record_path in root.rglob("*.json"):
        record = json.loads(record_path.read_text())
        key = (record["rule"], tuple(sorted((str(k), str(v)) for k, v in record.get("wildcards", {}).items())))
        output = record.get("output") or str(record_path.relative_to(root))[: -len(".json")]
        graph.producer[output] = key
        graph.inputs[key] = set(record.get("inputs", []))
        graph.params[key] = record.get("params", {})
    return graph


# ------------------------------------------------------------------------------------------------
# the run's tables
# ------------------------------------------------------------------------------------------------


def figures_table(tree: Path, name: str) -> pd.DataFrame:
    """The CSV of table ``name`` in a run's ``figures/`` folder."""
    return pd.read_csv(tree / "figures" / f"{name}.csv")


def assert_tables_written(tree: Path, names: Iterable[str]) -> None:
    """Each table in ``names`` is in ``figures/`` as CSV, Markdown and LaTeX (the formats the README
    promises, spelled out rather than read from the library), none nearly empty, the LaTeX a tabular."""
    for name in names:
        for ext in ("csv", "md", "tex"):
            path = tree / "figures" / f"{name}.{ext}"
            assert path.stat().st_size > 100, path
        assert "\\begin{tabular}" in (tree / "figures" / f"{name}.tex").read_text()

"""The pipeline on a real single-node SLURM cluster, through snakemake-executor-plugin-slurm.

Two clusters from tests/slurm_cluster.py, both without an accounting database (so Snakemake polls
with ``--slurm-status-command squeue``):

- ``slurm_gpu_cluster``: one node with one (count-only) GPU. A representative subset of the smoke
  DAG runs there with the project's profile (profiles/slurm) unchanged: MNIST's data preparation,
  LeNet-5 training and its bounds (GPU jobs), the five Chapter 3 tests, and Table 3.1 and Figure
  5.13 (local rules). Checked: every job that is not a local rule ran as a
  SLURM job, SLURM received the profile's threads, memory, time limit and GPU, and the artifacts
  equal the local smoke run's (deterministic ones byte for byte).
- ``slurm_cluster``: one node, no GPUs. A throwaway workflow (seconds per job, not the project's
  rules) shows the faults: a job cancelled with scancel while it runs, a job past its time limit,
  a GPU job on a cluster without GPUs; then a rerun runs only what is missing. It starts first
  and runs in the background, so that its minute-long time-limit case overlaps with the subset.

Without SLURM (not root, no apt) these tests skip; under CI=true they fail instead.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

import smoke_support as sm
from slurm_cluster import SlurmCluster, slurm_cluster, slurm_gpu_cluster  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.workflow, pytest.mark.slurm, pytest.mark.slow]

PROFILE = sm.REPO / "profiles" / "slurm" / "config.yaml"
#: the subset: one chain per kind of job (see the module docstring)
SUBSET = (
    "figures/table_3_1.csv",
    "figures/figure_5_13.csv",
)
#: the jobs the subset needs (rule -> count), local rules included
SUBSET_JOBS = {"ch3_linear_test": 5, "ch3_table_3_1": 1, "fetch_mnist": 1, "prepare_data": 1, "ch5_train": 1,
               "ch5_bounds": 1, "ch5_figure_5_13": 1}
DETERMINISTIC = ("figures/*.csv", "figures/*.md", "figures/*.tex", "results/**/*.csv")
#: the plugin polls squeue every few seconds instead of its cluster-friendly 40 s and more
FAST_POLLING = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                "--seconds-between-status-checks", "2", "--slurm-keep-successful-logs")
RUN_TIMEOUT = 900

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
JOB_HEAD = re.compile(r"^(local)?rule (\S+):$")
JOB_ID = re.compile(r"^\s+jobid: (\d+)$")


def snakemake(cluster: SlurmCluster, workdir: Path, *args: str, configfile: str | None = sm.SMOKE_CONFIG,
              background: bool = False):
    cmd = sm.snakemake_cmd(*args, configfile=configfile)
    env = {**sm._env(), **cluster.env}
    if background:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def jobs_of(log: str) -> list[tuple[str, bool, str]]:
    """(rule, is_local, snakemake jobid) of every job the log shows starting."""
    jobs, current = [], None
    for line in log.splitlines():
        head = JOB_HEAD.match(line)
        if head:
            current = (head.group(2), bool(head.group(1)))
            continue
        jobid = JOB_ID.match(line)
        if current and jobid:
            jobs.append((*current, jobid.group(1)))
            current = None
    return jobs


def _digests(tree: Path, files: list[str]) -> dict[str, str]:
    return {f: hashlib.sha256((tree / f).read_bytes()).hexdigest() for f in files}


def _deterministic_files(tree: Path) -> list[str]:
    found = set()
    for pattern in DETERMINISTIC:
        for path in tree.glob(pattern):
            rel = path.relative_to(tree).as_posix()
            if path.is_file() and not rel.startswith(("results/provenance/", "results/report/")):
                found.add(rel)
    return sorted(found)


def _localrules() -> set[str]:
    match = re.search(r"^localrules:\s*(.+)$", (sm.REPO / "Snakefile").read_text(), re.M)
    return {name.strip() for name in match.group(1).split(",")} if match else set()


# ------------------------------------------------------------------------------------------------
# faults, on the cluster without GPUs (a throwaway workflow, in the background)
# ------------------------------------------------------------------------------------------------

FAULT_SNAKEFILE = textwrap.dedent('''\
    # a throwaway workflow for tests/test_slurm.py: seconds per job, except where a fault needs time
    VICTIM_SLEEP = config.get("victim_sleep", 600)

    rule all:
        input: "out/after.txt", "out/slow.txt", "out/gpu.txt"

    rule prep:
        output: "out/prep.txt"
        shell: "echo prep > {output}"

    rule victim:
        # cancelled while it runs, with half its output written
        input: "out/prep.txt"
        output: "out/victim.txt"
        resources: runtime=10, mem_mb=200
        shell: "echo first-half > {output}; touch victim.running; sleep %d; echo second-half >> {output}" % VICTIM_SLEEP

    rule after:
        # threads and memory reach SLURM as --cpus-per-task / --mem (it runs alone, in the rerun)
        input: "out/victim.txt"
        output: "out/after.txt"
        threads: 2
        resources: runtime=7, mem_mb=321
        shell: "cat {input} > {output}"

    rule slow:
        # past its 1-minute time limit (runs beside prep and the victim)
        output: "out/slow.txt"
        resources: runtime=1, mem_mb=100
        shell: "sleep 600; touch {output}"

    rule gpu:
        # asks for a GPU; this cluster has none
        output: "out/gpu.txt"
        resources: gpu=1, runtime=5, mem_mb=100
        shell: "touch {output}"
    ''')

FAULT_ARGS = ("--executor", "slurm", "--jobs", "10", "--latency-wait", "5", "--keep-going",
              "--default-resources", "runtime=5", "mem_mb=200", *FAST_POLLING)


@dataclass
class FaultRun:
    tree: Path
    first: str = ""
    first_rc: int | None = None
    victim_jobid: str = ""
    second: str = ""
    second_rc: int | None = None
    after_first: dict[str, bool] = field(default_factory=dict)
    show: dict[str, dict[str, str]] = field(default_factory=dict)  # rule -> scontrol show job (both runs)
    error: BaseException | None = None
    seconds: float = 0.0


def _fault_scenario(cluster: SlurmCluster, run: FaultRun) -> None:
    started = time.monotonic()
    try:
        proc = snakemake(cluster, run.tree, *FAULT_ARGS, configfile=None, background=True)
        deadline = time.monotonic() + 300
        while not (run.tree / "victim.running").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the victim job never started:\n" + (proc.stdout.read() if proc.stdout else ""))
            time.sleep(0.5)
        # the running victim's SLURM job: its comment names the rule
        listing = cluster.run("squeue", "--noheader", "--states=RUNNING", "--format=%i %k").stdout
        ids = [line.split()[0] for line in listing.splitlines() if line.split()[1:] == ["rule_victim"]]
        assert len(ids) == 1, listing
        run.victim_jobid = ids[0]
        cluster.run("scancel", run.victim_jobid)
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
        run.first, run.first_rc = out, proc.returncode
        run.after_first = {name: (run.tree / "out" / name).exists()
                           for name in ("prep.txt", "victim.txt", "after.txt", "slow.txt", "gpu.txt")}
        slurm_ids = dict(SUBMITTED.findall(out))
        run.show = {rule: cluster.show_job(slurm_ids[jobid]) for rule, _, jobid in jobs_of(out) if jobid in slurm_ids}
        second = snakemake(cluster, run.tree, *FAULT_ARGS, "--config", "victim_sleep=0", "--", "out/after.txt",
                           configfile=None)
        run.second, run.second_rc = second.stdout + second.stderr, second.returncode
        slurm_ids = dict(SUBMITTED.findall(run.second))
        run.show.update({f"{rule} (rerun)": cluster.show_job(slurm_ids[jobid])
                         for rule, _, jobid in jobs_of(run.second) if jobid in slurm_ids})
    except BaseException as exc:  # reported by the tests that read the run
        run.error = exc
    finally:
        run.seconds = time.monotonic() - started


@pytest.fixture(scope="module")
def fault_run(slurm_cluster, tmp_path_factory):
    tree = tmp_path_factory.mktemp("slurm-faults")
    (tree / "Snakefile").write_text(FAULT_SNAKEFILE)
    run = FaultRun(tree)
    thread = threading.Thread(target=_fault_scenario, args=(slurm_cluster, run), daemon=True)
    thread.start()

    def result() -> FaultRun:
        thread.join(timeout=2 * RUN_TIMEOUT)
        assert not thread.is_alive(), "the fault scenario did not finish"
        if run.error is not None:
            raise run.error
        return run

    run.result = result
    yield run
    thread.join(timeout=2 * RUN_TIMEOUT)


# ------------------------------------------------------------------------------------------------
# the smoke subset, on the cluster with a GPU
# ------------------------------------------------------------------------------------------------


@dataclass
class SubsetRun:
    tree: Path
    log: str
    seconds: float
    slurm_ids: dict[str, str]  # snakemake jobid -> SLURM job id
    sources: set[str]  # files of the fresh copy that look like artifacts (figures/README.md)
    jobs: list[tuple[str, bool, str]]
    show: dict[str, dict[str, str]]  # SLURM job id -> scontrol show job


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory)


@pytest.fixture(scope="module")
def subset_run(slurm_gpu_cluster, fault_run, tmp_path_factory) -> SubsetRun:
    # fault_run is requested first so that it runs in the background meanwhile
    tree = sm.copy_repo(tmp_path_factory.mktemp("slurm-subset"))
    sources = set(_deterministic_files(tree))
    started = time.perf_counter()
    proc = snakemake(slurm_gpu_cluster, tree, "--workflow-profile", "profiles/slurm", *FAST_POLLING, "--", *SUBSET)
    seconds = time.perf_counter() - started
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake on SLURM failed (exit {proc.returncode}):\n{log[-8000:]}" \
                                 f"{slurm_gpu_cluster.log_tail()}"
    slurm_ids = dict(SUBMITTED.findall(log))
    # finished jobs stay in slurmctld for MinJobAge (5 min): read what SLURM was asked for
    show = {jobid: slurm_gpu_cluster.show_job(jobid) for jobid in slurm_ids.values()}
    # the evidence a reader of the test log (pytest -s) looks for: the node, and one SLURM job per job
    print("\n" + slurm_gpu_cluster.run("sinfo").stdout
          + "".join(f"SLURM job {sid}: {show[sid].get('Comment', '?')} {show[sid].get('JobState', '?')}\n"
                    for sid in slurm_ids.values()))
    return SubsetRun(tree, log, seconds, slurm_ids, sources, jobs_of(log), show)


def test_profile_sizes_every_rule_that_is_not_local() -> None:
    """Each rule is a local rule or has its runtime and memory in the profile's set-resources (the
    profile has no default-resources to fall back on: see its header)."""
    proc = subprocess.run(sm.snakemake_cmd("--list-rules", cores=1), cwd=sm.REPO, capture_output=True, text=True,
                          timeout=300, env=sm._env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = {line.split()[0] for line in proc.stdout.splitlines() if line and not line[0].isspace()}
    assert {"ch5_train", "prepare_data", "report"} <= rules, rules
    sizes = yaml.safe_load(PROFILE.read_text())["set-resources"]
    local = _localrules()
    assert not local & set(sizes), local & set(sizes)
    unsized = sorted(rules - local - set(sizes))
    assert not unsized, f"rules neither local nor sized in profiles/slurm: {unsized}"
    for rule, size in sizes.items():
        assert {"runtime", "mem_mb"} <= set(size), rule


def test_subset_ran_the_expected_jobs(subset_run) -> None:
    counts: dict[str, int] = {}
    for rule, _, _ in subset_run.jobs:
        counts[rule] = counts.get(rule, 0) + 1
    assert counts == SUBSET_JOBS, counts


def test_every_job_but_the_local_rules_ran_as_a_slurm_job(subset_run, slurm_gpu_cluster) -> None:
    local = _localrules()
    assert local, "the Snakefile declares no localrules"
    for rule, is_local, jobid in subset_run.jobs:
        if rule in local:
            assert is_local and jobid not in subset_run.slurm_ids, (rule, jobid)
        else:
            assert not is_local and jobid in subset_run.slurm_ids, f"{rule} (job {jobid}) was not submitted to SLURM"
    remote = [job for job in subset_run.jobs if not job[1]]
    assert len(subset_run.slurm_ids) == len(remote) == 8
    for rule, _, jobid in remote:
        info = subset_run.show[subset_run.slurm_ids[jobid]]
        assert info["JobState"] == "COMPLETED", (rule, info)
        assert info["Comment"].startswith(f"rule_{rule}"), (rule, info["Comment"])
        # the job ran on this cluster, in the private copy
        assert info["WorkDir"] == str(subset_run.tree) and info["Partition"] == "main"


def test_profile_resources_reached_slurm(subset_run) -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    sizes = profile["set-resources"]
    seen = set()
    for rule, _, jobid in (job for job in subset_run.jobs if not job[1]):
        info = subset_run.show[subset_run.slurm_ids[jobid]]
        assert rule in sizes, f"profile has no set-resources entry for {rule}"
        assert info["MinMemoryNode"] == f"{sizes[rule]['mem_mb']}M", (rule, info["MinMemoryNode"])
        minutes = sizes[rule]["runtime"]
        assert info["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", (rule, info["TimeLimit"])
        assert info["CPUs/Task"] == "1"  # the smoke config's threads (chapter3/5.threads: 1)
        gpu = sizes[rule].get("gpu", 0) == 1
        assert (info.get("TresPerJob") == "gres:gpu:1") == gpu, (rule, info.get("TresPerJob"))
        seen.add(rule)
    assert {"prepare_data", "ch3_linear_test", "ch5_train", "ch5_bounds"} <= seen


def test_subset_artifacts_equal_the_local_run(subset_run, smoke) -> None:
    files = [f for f in _deterministic_files(subset_run.tree) if f not in subset_run.sources]
    assert {"figures/table_3_1.csv", "figures/table_3_1.md", "figures/table_3_1.tex", "results/bounds/lenet5.csv",
            "figures/figure_5_13.csv"} <= set(files), files
    assert len([f for f in files if f.startswith("results/linear/")]) == 5
    ours, local = _digests(subset_run.tree, files), _digests(smoke.path, files)
    differing = [f for f in files if ours[f] != local[f]]
    assert not differing, f"differ from the local smoke run: {differing}"
    # the rest (figures, models, data) exists in both
    for name in ("figures/figure_5_13.png", "figures/figure_5_13.pdf", "results/models/lenet5.pt",
                 "results/models/lenet5.metrics.json", "results/data/mnist.pt"):
        assert (subset_run.tree / name).stat().st_size > 0 and (smoke.path / name).exists(), name


# ------------------------------------------------------------------------------------------------
# the fault scenario's checks
# ------------------------------------------------------------------------------------------------


def test_cancelled_job_is_reported_and_its_output_removed(fault_run) -> None:
    run = fault_run.result()
    assert run.first_rc != 0, run.first[-4000:]
    log = run.first
    assert re.search(rf"SLURM-job '{run.victim_jobid}' failed, SLURM status is: 'CANCELLED'", log), log[-6000:]
    assert re.search(r"Error in rule victim:", log), log[-6000:]
    # half-written output is removed, and nothing downstream of it ran
    assert not run.after_first["victim.txt"] and not run.after_first["after.txt"], run.after_first
    assert run.after_first["prep.txt"], run.after_first
    assert run.show["victim"]["JobState"] == "CANCELLED"


def test_job_past_its_time_limit_is_reported_as_timeout(fault_run) -> None:
    run = fault_run.result()
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'TIMEOUT'", run.first), run.first[-6000:]
    assert "Error in rule slow:" in run.first and not run.after_first["slow.txt"]
    assert run.show["slow"]["JobState"] == "TIMEOUT" and run.show["slow"]["TimeLimit"] == "00:01:00"


def test_gpu_job_on_a_cluster_without_gpus_fails_at_submission(fault_run) -> None:
    run = fault_run.result()
    log = run.first
    block = log[log.index("Error in rule gpu:"):] if "Error in rule gpu:" in log else log
    assert "SLURM sbatch failed" in log and "--gpus=1" in log, log[-6000:]
    assert re.search(r"Invalid generic resource \(gres\) specification", log), block[:3000]
    assert not run.after_first["gpu.txt"]


def test_threads_memory_and_runtime_reach_slurm(fault_run) -> None:
    after = fault_run.result().show["after (rerun)"]
    assert (after["CPUs/Task"], after["NumCPUs"], after["MinMemoryNode"], after["TimeLimit"]) == \
        ("2", "2", "321M", "00:07:00"), after
    assert after["JobState"] == "COMPLETED"


def test_rerun_after_cancel_runs_only_what_is_missing(fault_run) -> None:
    run = fault_run.result()
    assert run.second_rc == 0, run.second[-6000:]
    ran = sorted(rule for rule, _, _ in jobs_of(run.second))
    assert ran == ["after", "victim"], ran
    assert len(SUBMITTED.findall(run.second)) == 2
    assert (run.tree / "out" / "after.txt").read_text() == "first-half\nsecond-half\n"

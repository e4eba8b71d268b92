"""Incremental behaviour on the smoke config, checked against what the run really did.

The shared smoke run leaves a provenance record for every output (jobs.py): which rule and
wildcards produced it, from which inputs. From that record the tests predict the jobs a request
must run, and compare the prediction with Snakemake's own plan (``snakemake -n``):

* asking for one file builds exactly the jobs upstream of it, nothing else;
* editing one config value reruns exactly the jobs that receive it and the jobs downstream of them;
* deleting one result rebuilds only it (and, for the full DAG, what consumes it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import smoke_support as sm

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory)


@pytest.fixture(scope="session")
def graph(smoke) -> sm.ProvenanceGraph:
    return sm.provenance_graph(smoke.path)


@pytest.fixture(scope="session")
def fresh(tmp_path_factory) -> Path:
    """A copy of the repository with no results at all."""
    return sm.copy_repo(tmp_path_factory.mktemp("fresh-incremental"))


def _describe(keys) -> str:
    return "\n  ".join(f"{rule} {dict(wc)}" for rule, wc in sorted(keys)) or "(none)"


def _assert_same_jobs(planned: set, expected: set, what: str) -> None:
    extra, lacking = planned - expected, expected - planned
    assert not extra and not lacking, (
        f"{what}:\n planned but not needed:\n  {_describe(extra)}\n needed but not planned:\n  {_describe(lacking)}")


def test_complete_run_is_up_to_date(smoke) -> None:
    """Right after the run, nothing is stale (otherwise every check below would be noise)."""
    planned = sm.dry_run(smoke.path)
    assert not sm.job_keys(planned), "jobs planned after a complete run:\n" + "\n".join(
        f"{j.rule} {dict(j.wildcards)}: {j.reason}" for j in planned)


def test_every_job_left_a_provenance_record(smoke, graph) -> None:
    """The predictions below rely on these records; a rule that bypasses run_job would hide jobs.
    Each record holds what the report shows: params, seed, device, versions, commit, runtime."""
    full = sm.job_keys(sm.dry_run(smoke.path, "--forceall"))
    assert full, "a forced dry run planned no jobs"
    _assert_same_jobs(set(graph.inputs), full, "jobs of the DAG vs jobs with a provenance record")
    for record_path in (smoke.path / "results" / "provenance").rglob("*.json"):
        record = json.loads(record_path.read_text())
        assert {"params", "seed", "device", "packages", "git_commit", "runtime_s", "inputs"} <= set(record), record_path
        assert record["git_commit"] != "unknown" and record["packages"].get("torch"), record_path


@pytest.mark.parametrize("target", [
    "figures/table_3_1.csv",
    "figures/table_4_3.csv",
    "figures/table_5_2.csv",
    "figures/figure_5_13.pdf",
])
def test_one_target_builds_only_what_it_needs(fresh, graph, target: str) -> None:
    planned = sm.job_keys(sm.dry_run(fresh, target))
    expected = graph.upstream(target)
    assert expected, f"no provenance record of {target} in the smoke run"
    _assert_same_jobs(planned, expected, f"`snakemake {target}` on an empty tree")
    assert not any(rule.startswith("report") for rule, _ in planned)


def _with(config: dict, path: tuple[str, ...], change) -> tuple[dict, object, object]:
    node = config
    for key in path[:-1]:
        node = node[key]
    old = node[path[-1]]
    node[path[-1]] = change(old)
    return config, old, node[path[-1]]


# (config key path, how to change it, the rules that receive the value in their params)
CHANGES = [
    (("chapter5", "figures", "figure_5_13", "delta"), lambda v: v * 2, {"ch5_figure_5_13"}),
    (("chapter5", "attack", "tol"), lambda v: v / 2,
     {"ch5_attack", "ch5_figure_examples", "ch5_figure_2_5", "ch5_figure_2_5_model"}),
    # the report, the Chapters 3-4 verdict table and the protocol study judge with the same tolerances
    (("report", "tolerances", "statistical", "rel"), lambda v: v / 2, {"report", "ch4_comparison", "protocol_study"}),
    # the report's second verdicts come from the study's family of readings
    (("protocol_study", "explained_fraction"), lambda v: v / 2, {"protocol_study", "report"}),
    # the device reaches only the jobs whose results depend on it: never a fetch or prepare job
    (("device",), lambda v: "auto" if v != "auto" else "cpu",
     {"ch4_train", "ch4_regularization", "ch5_train", "ch5_bounds", "ch5_attack", "ch5_strong_attack", "ch5_figure_examples",
      "ch5_figure_5_12", "ch5_figure_2_5", "ch5_figure_2_5_model", "report"}),
    (("seed",), lambda v: v + 1,
     {"fetch_mnist", "fetch_cifar10", "fetch_spambase", "prepare_data", "ch3_linear_test", "ch3_figure_3_1",
      "ch4_random_mlp", "ch4_regularization", "ch4_train", "ch5_train", "ch5_figure_2_5", "ch5_figure_2_5_model",
      "ch5_figure_5_12", "ch5_figure_dataset", "ch5_figure_examples", "report"}),
]


@pytest.mark.parametrize("path, change, direct", CHANGES, ids=[".".join(c[0]) for c in CHANGES])
def test_changing_one_config_value_reruns_only_the_jobs_it_feeds(smoke, graph, tmp_path, path, change,
                                                                 direct) -> None:
    config = yaml.safe_load((smoke.path / sm.SMOKE_CONFIG).read_text())
    config, old, new = _with(config, path, change)
    modified = tmp_path / "modified.yaml"
    modified.write_text(yaml.safe_dump(config, sort_keys=False))

    plan = sm.dry_run(smoke.path, configfile=str(modified))
    receivers = {job for rule in direct for job in graph.jobs_of_rule(rule)}
    assert receivers, f"the smoke run has no job of {direct}"
    expected = receivers | graph.downstream(receivers)
    _assert_same_jobs(sm.job_keys(plan), expected, f"{'.'.join(path)}: {old} -> {new}")
    # a receiver that nothing else in the plan feeds reruns for its params alone (Snakemake names
    # only one reason, so a receiver downstream of another one may cite its updated input instead)
    fed_by_another = set().union(*(graph.downstream({job}) for job in receivers))
    first = receivers - fed_by_another
    for job in plan:
        if job.key in first:
            assert "Params have changed" in job.reason, (job.rule, dict(job.wildcards), job.reason)


def test_switching_offline_or_the_device_never_replans_a_fetch_or_prepare_job(smoke, tmp_path) -> None:
    """Snakemake deletes a job's outputs before rerunning it: a download would be deleted, and with
    offline on it would then be missing. ``offline`` is no param of any job, ``device`` only of the
    jobs whose numbers depend on it."""
    config = yaml.safe_load((smoke.path / sm.SMOKE_CONFIG).read_text())
    config["device"] = "auto" if config["device"] != "auto" else "cpu"
    config["offline"] = not config["offline"]
    modified = tmp_path / "modified.yaml"
    modified.write_text(yaml.safe_dump(config, sort_keys=False))
    rules = {rule for rule, _ in sm.job_keys(sm.dry_run(smoke.path, configfile=str(modified)))}
    assert rules, "switching the device re-planned nothing: the test would prove nothing"
    assert not {r for r in rules if r.startswith(("fetch_", "prepare_"))}, sorted(rules)


def test_a_chapter5_setting_replans_no_chapter3_job(smoke, tmp_path) -> None:
    config = yaml.safe_load((smoke.path / sm.SMOKE_CONFIG).read_text())
    config["chapter5"]["attack"]["eps_max"] = config["chapter5"]["attack"]["eps_max"] * 2
    modified = tmp_path / "modified.yaml"
    modified.write_text(yaml.safe_dump(config, sort_keys=False))
    rules = {rule for rule, _ in sm.job_keys(sm.dry_run(smoke.path, configfile=str(modified)))}
    assert "ch5_attack" in rules
    assert not {r for r in rules if r.startswith(("ch3_", "ch4_", "fetch_", "prepare_"))}, sorted(rules)


@pytest.mark.parametrize("module", ["bounds/layers.py", "report/html.py", "data/specs.py"])
def test_a_library_change_replans_exactly_the_jobs_that_run_it(smoke, graph, tmp_path, module) -> None:
    """Snakemake watches workflow/scripts/ only; the rules' ``code`` param is the fingerprint of the
    advbounds modules each script imports (advbounds.codehash). Edit one module in a copy (whose
    src/ the jobs then import) and compare the plan with the jobs whose scripts reach it."""
    from advbounds.codehash import module_sources

    tree = sm.clone(smoke.path, tmp_path / "tree")
    edited = tree / "src" / "advbounds" / module
    with open(edited, "a", encoding="utf-8") as handle:
        handle.write("\n# an edit that changes no behaviour, but is a change of the code all the same\n")
    scripts = sm.rule_scripts(tree)
    runs_it = {rule for rule, script in scripts.items()
               if edited.resolve() in module_sources(tree / "workflow" / "scripts" / script,
                                                     root=tree / "src" / "advbounds")}
    assert runs_it, f"no rule's script imports {module}"
    direct = {job for rule in runs_it for job in graph.jobs_of_rule(rule)}
    expected = direct | graph.downstream(direct)
    plan = sm.dry_run(tree, env={"PYTHONPATH": str(tree / "src")})
    _assert_same_jobs(sm.job_keys(plan), expected, f"after editing {module}")
    first = direct - set().union(*(graph.downstream({job}) for job in direct))
    for job in plan:
        if job.key in first:
            assert "Params have changed" in job.reason, (job.rule, dict(job.wildcards), job.reason)


def test_deleting_one_result_rebuilds_only_it(smoke, graph, tmp_path_factory) -> None:
    tree = sm.clone(smoke.path, tmp_path_factory.mktemp("deleted-result"))
    result = "results/bounds/lenet5.csv"
    producer = graph.producer[result]
    before = (tree / result).read_bytes()
    (tree / result).unlink()

    # asking for the result plans exactly its job; the full DAG never plans anything upstream of it
    # (Snakemake leaves a missing intermediate alone while everything that consumes it is up to date)
    assert sm.job_keys(sm.dry_run(tree, result)) == {producer}
    planned = sm.job_keys(sm.dry_run(tree))
    assert planned <= {producer} | graph.downstream({producer}), _describe(planned)

    # rebuilding it runs one job, writes the same bytes and touches no other output
    stamps = {p: p.stat().st_mtime_ns for folder in ("results", "figures") for p in (tree / folder).rglob("*")
              if p.is_file()}
    proc = sm.run_snakemake(tree, result)
    ran = sm.job_keys(sm.parse_dry_run(proc.stdout + proc.stderr))
    assert ran == {producer}, _describe(ran)
    assert (tree / result).read_bytes() == before
    touched = sorted(str(p.relative_to(tree)) for p, t in stamps.items() if p.exists() and p.stat().st_mtime_ns != t)
    assert set(touched) <= {f"results/provenance/{result}.json"}, touched
    # and, the bytes being the same, nothing downstream counts as outdated
    assert not sm.job_keys(sm.dry_run(tree)), "consumers of an identical rebuilt file were planned"


def test_deleting_one_figure_rebuilds_only_it_and_the_report(smoke, graph, tmp_path_factory) -> None:
    tree = sm.clone(smoke.path, tmp_path_factory.mktemp("deleted-figure"))
    figure = "figures/figure_5_11.pdf"
    producer = graph.producer[figure]
    (tree / figure).unlink()
    planned = sm.job_keys(sm.dry_run(tree))
    expected = {producer} | graph.downstream({producer})
    assert {rule for rule, _ in expected} >= {"report"}
    _assert_same_jobs(planned, expected, f"full DAG after deleting {figure}")

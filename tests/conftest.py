"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Real data files that stand in for downloads on offline machines; never needed at run time.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data files not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Run the tests' torch code on one intra-op thread.

    The tests' models are tiny and CI's CPU has two cores, shared with Snakemake jobs in the
    workflow tests: there, several OpenMP threads per process (LAPACK above all) run 10-50x slower
    than one. Session scope, so that module-scoped fixtures (a model trained once per module) run
    with the same thread count as the tests that retrain and compare bit for bit: float32
    reductions depend on it. Jobs that Snakemake starts are separate processes with their own.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _back_to_one_torch_thread(one_torch_thread):
    """A test that calls ``run_job`` in-process sets the job's thread count; undo it afterwards."""
    yield
    torch.set_num_threads(1)


#: The test files that take longest, in the order CI's pytest-xdist workers should start them (the
#: README's test command runs ``-n auto`` with ``--dist loadfile --no-loadscope-reorder``, see
#: pyproject.toml): longest first, so that the last file to start is a short one and the two workers
#: finish together. Only a schedule; every file also runs alone, in any order.
LONGEST_FIRST = (
    "test_slurm.py",              # starts SLURM twice and runs smoke jobs through it
    "test_incremental.py",        # the shared smoke DAG, then many dry runs and reruns
    "test_determinism.py",        # a second, independent smoke run of the tables
    "test_robustness.py",
    "test_documented_commands.py",
    "test_workflow_contract.py",
    "test_workflow.py",
    "test_workflow_ch5.py",
    "test_workflow_ch34.py",
    "test_workflow_sandwich.py",
    "test_report.py",
    "test_notebooks.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: files stay whole

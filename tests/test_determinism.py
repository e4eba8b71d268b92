"""Two independent runs of the smoke config give identical tables.

Each run happens in its own fresh copy of the repository (the first is the run every workflow test
shares). Compared byte for byte: every thesis table (CSV, Markdown, LaTeX), the figures' data files,
every per-sample result CSV under results/ and the report's verdict table. Provenance records and
logs hold timestamps and runtimes, so they are not compared.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import smoke_support as sm

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

TABLE_PATTERNS = ("figures/*.csv", "figures/*.md", "figures/*.tex", "results/**/*.csv")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory)


@pytest.fixture(scope="session")
def smoke_again(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory, name="smoke-2")


def _tables(tree: Path) -> dict[str, str]:
    files = {}
    for pattern in TABLE_PATTERNS:
        for path in tree.glob(pattern):
            relative = path.relative_to(tree).as_posix()
            if path.is_file() and not relative.startswith(("results/provenance/", "results/report/gallery/")):
                files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def test_two_runs_give_identical_tables(smoke, smoke_again) -> None:
    first, second = _tables(smoke.path), _tables(smoke_again.path)
    assert any(name.startswith("figures/table_") for name in first), sorted(first)
    assert set(first) == set(second), set(first) ^ set(second)
    differing = sorted(name for name in first if first[name] != second[name])
    assert not differing, f"tables that differ between two runs of the same config: {differing}"


def test_runs_record_the_same_seed_device_and_params(smoke, smoke_again) -> None:
    """What the provenance says about the two runs agrees, except times and runtimes."""
    one, two = sm.provenance_graph(smoke.path), sm.provenance_graph(smoke_again.path)
    assert set(one.params) == set(two.params)
    different = sorted(key for key in one.params if one.params[key] != two.params[key])
    assert not different, different

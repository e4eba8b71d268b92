"""Two independent runs of the smoke config give identical tables.

Each run happens in its own fresh copy of the repository: the first is the complete run every
workflow test shares, the second builds one table per kind of job from scratch: Table 3.1 (random
linear classifiers), 4.2 (random MLPs), 4.3 (trained MLPs on the UCI sets) and 5.1 (CNN training,
bounds and attacks on LeNet-5 and CIFAR-NIN), with everything they need. The other tables repeat
the same kinds of job on other models, so leaving them (and the figures) out keeps the CI run
within its time budget without leaving a kind of job unchecked.
Compared byte for byte: every table the second run wrote (CSV, Markdown, LaTeX) and every
per-sample result CSV under results/. Provenance records and logs hold timestamps and runtimes, so
they are compared only for their recorded params.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import smoke_support as sm
from advbounds.report import catalog

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

TABLE_PATTERNS = ("figures/*.csv", "figures/*.md", "figures/*.tex", "results/**/*.csv")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory)


#: one table per kind of job (see the module docstring)
CHECKED_TABLES = ("figures/table_3_1.csv", "figures/table_4_2.csv", "figures/table_4_3.csv", "figures/table_5_1.csv")
TABLES = [path for item in catalog.generated_items() if item.kind == "table" and set(CHECKED_TABLES) & set(item.files)
          for path in item.files]


def test_the_checked_tables_exist_in_the_catalog() -> None:
    assert set(CHECKED_TABLES) <= set(TABLES)


@pytest.fixture(scope="session")
def smoke_again(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory, name="smoke-tables", targets=TABLES)


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
    assert set(TABLES) <= set(second), sorted(set(TABLES) - set(second))
    assert set(second) <= set(first), sorted(set(second) - set(first))
    differing = sorted(name for name in second if first[name] != second[name])
    assert not differing, f"tables that differ between two runs of the same config: {differing}"


def test_runs_record_the_same_seed_device_and_params(smoke, smoke_again) -> None:
    """Every job of the second run ran in the first with the same params (seed, device, config)."""
    one, two = sm.provenance_graph(smoke.path), sm.provenance_graph(smoke_again.path)
    assert set(two.params) <= set(one.params), sorted(set(two.params) - set(one.params))
    different = sorted(key for key in two.params if one.params[key] != two.params[key])
    assert not different, different

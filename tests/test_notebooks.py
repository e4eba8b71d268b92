"""The notebooks execute against the smoke run's outputs (so they never rot).

Each notebook is run top to bottom with nbclient, its results folder given by ADVBOUNDS_RESULTS
(the shared smoke run). A notebook passes when no cell raises and it shows at least one figure.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

import smoke_support as sm

NOTEBOOKS = sm.REPO / "notebooks"
EXPECTED = ("chapter3_linear.ipynb", "chapter4_mlp.ipynb", "chapter5_cnn.ipynb")


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory)


def test_one_notebook_per_chapter() -> None:
    present = {p.name for p in NOTEBOOKS.glob("*.ipynb")}
    assert set(EXPECTED) <= present, f"missing notebooks: {sorted(set(EXPECTED) - present)}"


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_is_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), \
        f"{name} carries outputs; clear them before committing"


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs_on_the_smoke_outputs(smoke, monkeypatch, name: str) -> None:
    monkeypatch.setenv("ADVBOUNDS_RESULTS", str(smoke.path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} shows no figure"

"""pyproject.toml is the one list of dependencies; environment.yml only installs it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_torch_and_torchvision_are_pinned_as_an_exact_pair() -> None:
    deps = _pyproject()["project"]["dependencies"]
    pins = {m.group(1): m.group(2) for d in deps if (m := re.fullmatch(r"(torch|torchvision)==([\d.]+)", d))}
    assert set(pins) == {"torch", "torchvision"}, deps
    # torchvision 0.N pairs with torch 2.(N-15); e.g. 0.29 <-> 2.14
    assert int(pins["torchvision"].split(".")[1]) - 15 == int(pins["torch"].split(".")[1])


def test_pyproject_lists_what_the_pipeline_needs() -> None:
    project = _pyproject()["project"]
    names = {re.split(r"[<>=!~\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    for needed in ("snakemake", "scikit-learn", "pandas", "matplotlib", "seaborn", "jupyter", "tqdm"):
        assert needed in names, needed
    assert any(d.startswith("snakemake>=9") for d in project["dependencies"])
    dev = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in project["optional-dependencies"]["dev"]}
    assert {"pytest", "hypothesis"} <= dev


def test_environment_installs_the_package_from_pyproject_and_nothing_else() -> None:
    env = _environment()
    deps = env["dependencies"]
    pip_blocks = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_blocks == [["-e .[dev]"]], "environment.yml must pip-install this package, not list deps"
    conda_pkgs = [d for d in deps if isinstance(d, str)]
    assert sorted(re.split(r"[=<>]", d)[0] for d in conda_pkgs) == ["pip", "python"]
    python_pin = next(d for d in conda_pkgs if d.startswith("python"))
    minimum = _pyproject()["project"]["requires-python"].removeprefix(">=")
    assert tuple(map(int, python_pin.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- test-command:start -->\s*```bash\n(.+?)\n```\s*<!-- test-command:end -->", readme, re.S)
    assert block, "README must hold the test command between test-command markers"
    assert "pytest" in block.group(1) and "pip install" in block.group(1)
    assert "test-command:start" in (ROOT / ".ci" / "run").read_text()
    thesis = re.search(r"<!-- thesis-command:start -->\s*```bash\n(.+?)\n```", readme, re.S)
    assert thesis and thesis.group(1).strip().endswith("snakemake --cores all")

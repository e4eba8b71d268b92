"""advbounds.codehash: the library modules a workflow script runs, read statically, and their hash."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from advbounds.codehash import code_fingerprint, imported_modules, module_sources, package_root

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"


def names(paths) -> set[str]:
    root = package_root()
    return {p.relative_to(root).as_posix() for p in paths}


def test_imports_inside_functions_relative_imports_and_submodules_are_found():
    source = "def main():\n    from advbounds.bounds import layers, model_bounds\n    import advbounds.io\n"
    assert {"advbounds.bounds", "advbounds.bounds.layers", "advbounds.io"} <= imported_modules(source)
    relative = imported_modules("from ._common import x\nfrom .. import io\n", module="advbounds.bounds.layers")
    assert {"advbounds.bounds._common", "advbounds.io"} <= relative


def test_a_script_reaches_its_modules_their_imports_and_every_enclosing_package():
    found = names(module_sources(SCRIPTS / "ch5_bounds.py"))
    assert {"__init__.py", "jobs.py", "experiments/__init__.py", "experiments/cnn.py",
            "bounds/__init__.py", "bounds/layers.py", "bounds/spectral.py"} <= found
    fetch = names(module_sources(SCRIPTS / "fetch_data.py"))
    assert "bounds/layers.py" not in fetch and "training.py" not in fetch


@pytest.mark.parametrize("script", ["ch5_bounds.py", "ch4_train.py", "report_html.py", "ch3_linear_test.py"])
def test_the_static_closure_covers_every_module_the_script_really_imports(script):
    """Run the script's advbounds imports for real (with its main's imports too) and compare."""
    source = (SCRIPTS / script).read_text()
    imports = [line.strip() for line in source.splitlines()
               if line.strip().startswith(("from advbounds", "import advbounds"))]
    program = "\n".join(imports) + (
        "\nimport sys, json\nprint(json.dumps(sorted(getattr(m, '__file__', None) or '' "
        "for n, m in sys.modules.items() if n == 'advbounds' or n.startswith('advbounds.'))))")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=300)
    loaded = {Path(p).resolve() for p in json.loads(proc.stdout) if p}
    static = set(module_sources(SCRIPTS / script))
    missing = sorted(str(p) for p in loaded - static)
    assert not missing, f"{script} imports modules the fingerprint ignores: {missing}"


def test_the_fingerprint_follows_exactly_the_modules_a_script_imports(tmp_path):
    root = tmp_path / "advbounds"
    shutil.copytree(package_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    bounds_job, fetch_job = SCRIPTS / "ch5_bounds.py", SCRIPTS / "fetch_data.py"
    before = {s: code_fingerprint(s, root) for s in (bounds_job, fetch_job)}
    with open(root / "bounds" / "layers.py", "a") as handle:
        handle.write("\n# an edit\n")
    after = {s: code_fingerprint(s, root) for s in (bounds_job, fetch_job)}
    assert after[bounds_job] != before[bounds_job]
    assert after[fetch_job] == before[fetch_job]
    with open(root / "data" / "specs.py", "a") as handle:
        handle.write("\n# an edit\n")
    assert code_fingerprint(fetch_job, root) != before[fetch_job]

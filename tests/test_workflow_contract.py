"""What a Snakemake user relies on: the default profile loads by itself, no rule offers an
environment it cannot build, each rule's code fingerprint is of its own script, and Snakemake's own
``--report`` holds every artifact with its thesis caption."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

import smoke_support as sm

pytestmark = [pytest.mark.workflow]

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def test_the_default_profile_is_picked_up_without_a_flag(tmp_path):
    tree = sm.copy_repo(tmp_path / "tree")
    proc = sm.run_snakemake(tree, "-n", "figures/table_3_1.csv")
    assert "Using workflow specific profile profiles/default" in proc.stdout + proc.stderr
    # and its settings are in force: one gpu=1 job at a time, shell commands and failed logs shown
    profile = (REPO / "profiles" / "default" / "config.yaml").read_text()
    assert re.search(r"^resources:\s*\n\s*- gpu=1", profile, re.M)
    assert "printshellcmds: true" in profile and "show-failed-logs: true" in profile


def test_no_rule_declares_a_conda_environment():
    """environment.yml installs this checkout (pip -e .), which a per-rule environment built by
    Snakemake under .snakemake/conda/ cannot do, so --use-conda is not offered (README)."""
    for smk in RULE_FILES:
        assert not re.search(r"^\s+conda:", smk.read_text(), re.M), smk.name
    readme = (REPO / "README.md").read_text()
    assert "--use-conda` is not offered" in readme
    assert not re.search(r"`snakemake[^`]*--use-conda", readme)


def test_every_rule_fingerprints_the_code_of_its_own_script():
    for smk in RULE_FILES:
        text = smk.read_text()
        for block in re.split(r"(?m)^(?=rule |    rule:|use rule )", text):
            script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)"', block)
            if script:
                assert re.search(rf'job_params\("{re.escape(script.group(1))}"', block), (smk.name, block[:80])


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> sm.SmokeRun:
    return sm.smoke_run(tmp_path_factory)


def test_snakemakes_own_report_has_every_artifact_with_its_thesis_caption(smoke, tmp_path):
    from advbounds.report.catalog import gallery_captions

    tree = sm.clone(smoke.path, tmp_path / "tree")
    sm.run_snakemake(tree, "--report", "report.zip", timeout=900)
    with zipfile.ZipFile(tree / "report.zip") as archive:
        text = "\n".join(archive.read(name).decode("utf-8", "replace") for name in archive.namelist()
                         if name.endswith((".js", ".html", ".json")))
    targets = sorted(f"figures/{p.name}" for p in (tree / "figures").iterdir() if p.suffix in (".png", ".csv"))
    captions = gallery_captions(targets)
    assert {"figure_2_5_lenet5", "comparison_chapters34"} <= set(captions)
    for key, caption in captions.items():
        assert key in text, f"{key} is missing from snakemake's report"
        assert caption.split(":")[0] in text, f"the caption of {key} is not in snakemake's report"

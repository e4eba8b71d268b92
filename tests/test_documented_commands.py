"""Every snakemake command in README.md and docs/*.md runs: dry-run on a fresh copy of the repository.

Documentation rots silently; here a command that names a missing config file, an unknown rule or
target, a typo'd flag or a config value the schema rejects fails the test. Commands are taken from
fenced code blocks (the part from ``snakemake`` on, up to a ``#`` comment) and from inline code
spans. A command with a ``<placeholder>`` is a template: a placeholder the test knows is filled
in, the others make the command a pattern to read, not to run. ``--report`` needs a finished run
and is exercised on the smoke run in tests/test_workflow_contract.py; ``--unlock`` runs as it is.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import smoke_support as sm

pytestmark = [pytest.mark.workflow]

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: placeholders whose value the test knows
FILLED = {"<staged>": "resources"}
_FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`(snakemake [^`]+)`")


def documented_commands() -> dict[str, list[str]]:
    """command -> the documents that show it."""
    found: dict[str, list[str]] = {}

    def add(command: str, where: Path) -> None:
        command = command.split(" #", 1)[0].strip().rstrip(";")
        for placeholder, value in FILLED.items():
            command = command.replace(placeholder, value)
        if re.search(r"<[^>]+>", command) or command in ("snakemake", "snakemake --cores all <target>"):
            return
        found.setdefault(command, []).append(where.name)

    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for block in _FENCE.findall(text):
            for line in block.splitlines():
                match = re.search(r"(?:^|&& |\$ )(snakemake\b.*)$", line.strip())
                if match:
                    add(match.group(1), document)
        for span in _INLINE.findall(_FENCE.sub("", text)):
            add(span, document)
    return found


COMMANDS = documented_commands()
#: ``snakemake --cores all figures/<one artifact>`` per row of the README's artifact table: one dry
#: run for all of them (an unknown target still fails it, by name), to keep CI short
_ONE_TARGET = re.compile(r"^snakemake --cores all (figures/\S+)$")
TARGETS = sorted(m.group(1) for c in COMMANDS if (m := _ONE_TARGET.match(c)))
RUNS = sorted(c for c in COMMANDS if not _ONE_TARGET.match(c)) + (
    ["snakemake --cores all " + " ".join(TARGETS)] if TARGETS else [])


def test_the_documents_show_commands_to_check():
    assert len(COMMANDS) >= 10, COMMANDS
    assert "snakemake --cores all" in COMMANDS  # the README's thesis command


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return sm.copy_repo(tmp_path_factory.mktemp("documented-commands"))


@pytest.mark.parametrize("command", RUNS, ids=lambda c: c[:70])
def test_documented_command_dry_runs(fresh, command):
    args = shlex.split(command)[1:]
    if "--report" in args:
        pytest.skip("--report needs a finished run: tests/test_workflow_contract.py runs it on the smoke run")
    if any("profiles/slurm" in a or a == "slurm" for a in args):
        pytest.importorskip("snakemake_executor_plugin_slurm")
    if "--unlock" not in args:
        args.insert(0, "-n")  # first: a trailing `--` makes everything after it a target
    proc = sm.run_snakemake(fresh, *args, cores=1, configfile=None, check=False, timeout=600)
    output = proc.stdout + proc.stderr
    where = ", ".join(COMMANDS.get(command, ["README.md artifact table"]))
    assert proc.returncode == 0, f"`{command}` (from {where}) failed:\n{output[-3000:]}"

"""Publish a finished run as a snapshot in the repository (docs/results/), so that a reader sees what
the pipeline gives on real data without running it.

    python -m advbounds.report.publish RUN_DIR [docs/results] [--partial-report] [--note TEXT]

copies, from the run folder ``RUN_DIR`` (the folder holding its ``figures/`` and ``results/``):
the report page and its verdicts (``results/report/verdicts.csv``), every table (csv and md),
every figure as PNG, the per-sample sandwich tables, and writes ``MANIFEST.json``: the commit(s)
that produced the artifacts, the config slices, the devices, the date range, every file with its
size, and the catalog artifacts the run did not make (with ``--note`` saying why, e.g. no CIFAR-10
on the machine). The previous snapshot is replaced
as a whole (written beside it, then renamed), except its hand-written ``README.md``, which is kept.
A snapshot over ``MAX_BYTES`` is refused.

The run's report page embeds every figure as a base64 PNG; the snapshot holds those PNGs as files
too, so its copy of the page links each embedded image that is byte-identical to a snapshot file
instead (``report.html`` and the PNGs share ``figures/``). That halves the snapshot's size; an image
with no identical file stays embedded.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from advbounds.io import atomic_directory
from advbounds.report.catalog import EXTRAS, FIGURES_DIR, REPORT_HTML, REPORT_VERDICTS, generated_items

MAX_BYTES = 10 * 1024 * 1024
MANIFEST = "MANIFEST.json"
#: hand-written files of the snapshot folder that a refresh keeps (the README says how the run was made)
KEPT = ("README.md",)
#: the formats a snapshot keeps (CSV, Markdown and PNG say what LaTeX and PDF say), and the report page
SNAPSHOT_SUFFIXES = (".csv", ".md", ".png", ".html")


def snapshot_files(run: Path) -> list[str]:
    """The run's files that go into a snapshot, relative to the run folder."""
    figures = sorted(p for p in (run / FIGURES_DIR).glob("*") if p.suffix in SNAPSHOT_SUFFIXES)
    sandwiches = sorted((run / "results" / "sandwich").glob("*.csv"))
    verdicts = [run / REPORT_VERDICTS] if (run / REPORT_VERDICTS).exists() else []
    return [str(p.relative_to(run)) for p in [*figures, *sandwiches, *verdicts]]


def expected_artifacts() -> list[str]:
    """Every catalog artifact a complete run writes, in the formats a snapshot keeps."""
    files = [f for item in generated_items() for f in item.files] + \
        [f for extra in EXTRAS if "{" not in extra.key for f in extra.files] + [REPORT_HTML]
    return [f for f in files if f.endswith(SNAPSHOT_SUFFIXES)]


def manifest(run: Path, files: list[str], sizes: Mapping[str, int], note: str = "") -> dict[str, Any]:
    """The snapshot's record; ``sizes``: the snapshot's file sizes.

    Commits, devices and dates cover every job upstream of the snapshot's files (their provenance
    lineage), not only the jobs that wrote them: a model trained at an older commit shapes every
    table below it."""
    from advbounds.report.sources import lineage, load_provenance

    records = {f: r for f in files if (r := load_provenance(run, f))}
    jobs, _ = lineage(run, files, limit=100_000)
    finished = sorted(r["finished_at"] for r in jobs if r.get("finished_at"))
    return {
        "commits": sorted({r["git_commit"] for r in jobs if r.get("git_commit")}),
        "devices": sorted({f"{r.get('device')} ({r.get('device_name', '')})" for r in jobs}),
        "finished": [finished[0], finished[-1]] if finished else [],
        "packages": next(iter(records.values())).get("packages") if records else {},
        "settings": {f: r.get("params", {}).get("settings") for f, r in records.items()},
        "files": dict(sizes),
        "missing": [f for f in expected_artifacts() if f not in files],
        "note": note,
    }


_EMBEDDED_PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def link_embedded_images(html: str, pngs: Mapping[bytes, str]) -> str:
    """``html`` with every embedded PNG whose bytes have the SHA-256 digest of a key of ``pngs``
    replaced by a link to that key's value (a path relative to the page); other images stay."""
    def link(match: re.Match) -> str:
        name = pngs.get(hashlib.sha256(base64.b64decode(match.group(1))).digest())
        return f'src="{name}"' if name else match.group(0)

    return _EMBEDDED_PNG.sub(link, html)


def _link_report_images(snapshot: Path) -> None:
    page = snapshot / REPORT_HTML
    pngs = {hashlib.sha256(p.read_bytes()).digest(): p.relative_to(page.parent).as_posix()
            for p in page.parent.glob("*.png")}
    page.write_text(link_embedded_images(page.read_text(encoding="utf-8"), pngs), encoding="utf-8")


def build_partial_report(run: str | Path, config_path: str = "config/config.yaml") -> None:
    """Write ``figures/report.html`` and ``results/report/verdicts.csv`` of a run that made only part
    of the catalog (Snakemake's ``report`` rule asks for every artifact): the same page, with the
    missing ones marked, and the protocol study's second verdicts where the run made the study."""
    import yaml

    from advbounds.report.build import write_report_files

    run = Path(run)
    config = yaml.safe_load((run / config_path).read_text())
    # the page's own file is not one of its inputs (it exists when a partial report is rebuilt)
    present = [f for f in expected_artifacts() if f != REPORT_HTML and (run / f).exists()]
    write_report_files(run / REPORT_HTML, run / REPORT_VERDICTS, root=run,
                       paper_values_path=run / "reference" / "paper_values.yaml",
                       findings_path=run / "docs" / "findings.md", settings=config["report"],
                       run={"synthetic": False, "seed": config["seed"], "device": "cpu", "partial run": True},
                       artifacts=present, protocol_study=config["protocol_study"])


def publish(run: str | Path, out: str | Path = "docs/results", note: str = "") -> dict[str, Any]:
    run, out = Path(run), Path(out)
    if not (run / REPORT_HTML).exists():
        raise FileNotFoundError(f"{run} holds no finished run (no {REPORT_HTML})")
    files = snapshot_files(run)
    with atomic_directory(out) as tmp:
        for f in files:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run / f, tmp / f)
        if (tmp / REPORT_HTML).exists():
            _link_report_images(tmp)
        for name in KEPT:
            if (out / name).exists():
                shutil.copyfile(out / name, tmp / name)
        sizes = {f: (tmp / f).stat().st_size for f in files}
        if sum(sizes.values()) > MAX_BYTES:  # raised inside the block: the temporary folder goes, the old one stays
            raise ValueError(f"the snapshot would be {sum(sizes.values()) / 2**20:.1f} MiB, "
                             f"over the {MAX_BYTES / 2**20:.0f} MiB limit")
        record = manifest(run, files, sizes, note)
        (tmp / MANIFEST).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m advbounds.report.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the run folder (holding figures/ and results/)")
    parser.add_argument("out", nargs="?", default="docs/results", help="where the snapshot goes (default docs/results)")
    parser.add_argument("--note", default="", help="what the run leaves out, and why")
    parser.add_argument("--partial-report", action="store_true",
                        help="first write figures/report.html from the artifacts the run made (a run without some data)")
    args = parser.parse_args(argv)
    if args.partial_report:
        build_partial_report(args.run)
    record = publish(args.run, args.out, args.note)
    print(f"{len(record['files'])} files, {sum(record['files'].values()) / 2**20:.1f} MiB -> {args.out}; "
          f"missing: {len(record['missing'])}")


if __name__ == "__main__":
    main()

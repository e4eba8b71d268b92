"""Every table and figure of the thesis, and where the pipeline puts its reproduction.

The catalogue is the report's table of contents and the README's "thesis label -> target -> file"
table. Items the thesis took from the literature (architecture diagrams, other papers' images) are
listed too, with ``generated=False`` and the reason, so the report accounts for every label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from advbounds.layout import FIGURE_SUFFIXES, FIGURES_DIR, TABLE_SUFFIXES

SUFFIXES = {"table": TABLE_SUFFIXES, "figure": FIGURE_SUFFIXES}
#: the one file of a table or figure that the report page and Snakemake's report show
SHOWN_SUFFIX = {"figure": "png", "table": "csv"}


def artifact_paths(stem: str, kind: str) -> tuple[str, ...]:
    """The files a table or figure named ``stem`` is written as: ``figures/<stem>.<suffix>``."""
    return tuple(f"{FIGURES_DIR}/{stem}.{suffix}" for suffix in SUFFIXES[kind])


class _Staged:
    """A catalog entry built by the rules of ``built_by`` when set, else of its own ``chapter``."""

    chapter: int
    built_by: int | None

    @property
    def stage(self) -> int:
        return self.built_by or self.chapter


@dataclass(frozen=True)
class ThesisItem(_Staged):
    label: str  # as printed in the thesis: "Table 3.1"
    key: str  # artifact stem and paper_values.yaml key: "table_3_1"
    kind: str  # "table" | "figure" | "text" (numbers stated in the running text)
    chapter: int
    section: str
    caption: str
    generated: bool = True
    why_not_generated: str = ""
    #: thesis results the item rests on; a finding that names one of them concerns this item
    topics: tuple[str, ...] = ()
    #: per-model files behind the item besides the figures (``results/<what>/<model>.<ext>``): the
    #: report reads them for the models the config trains (:func:`source_files`)
    sources: tuple[str, ...] = ()
    #: paper_values.yaml keys whose numbers this item is compared with (default: its own key)
    published_keys: tuple[str, ...] = field(default=())
    #: data behind a figure, written beside it (e.g. the curve of Figure 5.12 as CSV)
    data_files: tuple[str, ...] = ()
    #: what our artifact shows, in a few words (the README's table); default: the caption
    summary: str = ""
    #: the chapter whose rules build it (``snakemake chapter<N>``), when not its own: Figure 2.1
    #: comes from Chapter 4's activation functions, Figure 2.5 from Chapter 5's networks
    built_by: int | None = None
    #: the caption our table file carries, where it must say more than the thesis's (units, which
    #: samples, columns beyond the thesis); default ``"<label>: <caption>"`` (:func:`table_caption`)
    file_caption: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        """The artifacts the pipeline writes for this item (none for text items / literature)."""
        if not self.generated or self.kind == "text":
            return ()
        return artifact_paths(self.key, self.kind) + self.data_files

    @property
    def target(self) -> str | None:
        """The file to ask snakemake for (``snakemake --cores all <target>``)."""
        if not self.files:
            return None
        return self.files[0]

    @property
    def image(self) -> str | None:
        return shown_file(self.key) if self.generated and self.kind == "figure" else None

    @property
    def anchor(self) -> str:
        return self.key.replace("_", "-")

    @property
    def paper_keys(self) -> tuple[str, ...]:
        return self.published_keys or (self.key,)


def _literature(label: str, chapter: int, section: str, caption: str, why: str) -> ThesisItem:
    key = label.lower().replace(" ", "_").replace(".", "_")
    return ThesisItem(label, key, "figure", chapter, section, caption, generated=False, why_not_generated=why)


_LITERATURE = "an illustration taken from the literature; nothing to compute"
_DIAGRAM = "an architecture diagram; the architecture itself is built in advbounds.models"

CATALOG: tuple[ThesisItem, ...] = (
    _literature("Figure 1.1", 1, "1.1", "An example of an imperceptible perturbation causing a "
                "misclassification on GoogLeNet", _LITERATURE),
    ThesisItem("Figure 2.1", "figure_2_1", "figure", 2, "2.4.2",
               "Some examples of commonly used activation functions", topics=("Table 4.1",), built_by=4,
               summary="activation functions"),
    _literature("Figure 2.2", 2, "2.4.2", "Graphical depiction of an MLP with one hidden layer", _DIAGRAM),
    _literature("Figure 2.3", 2, "2.4.3", "A typical CNN architecture", _DIAGRAM),
    _literature("Figure 2.4", 2, "2.5.5", "Example of adversarial perturbations from Szegedy et al. 2013",
                _LITERATURE),
    ThesisItem("Figure 2.5", "figure_2_5", "figure", 2, "2.7", "Iterative perturbation",
               topics=("Section 2.7", "iterative perturbation"), built_by=5,
               summary="iterative FGS perturbation (CIFAR-NIN; LeNet-5 extra)"),
    ThesisItem("Figure 3.1", "figure_3_1", "figure", 3, "3.1",
               "Minimal adversarial perturbation for a binary classifier",
               topics=("Lemma 3.1", "Theorem 3.7"),
               summary="geometry of the minimal perturbation, binary linear classifier"),
    ThesisItem("Table 3.1", "table_3_1", "table", 3, "3.3", "Test results on linear classifiers",
               topics=("Lemma 3.5", "Theorem 3.7", "eq. 3.12", "linear_output_bound"),
               summary="random linear classifiers: FGS norm - bound, plus exact minimum"),
    ThesisItem("Figure 3.2", "figure_3_2", "figure", 3, "3.3", "Boxplots of bound deviations for linear classifiers",
               topics=("Lemma 3.5", "Table 3.1", "linear_output_bound"),
               summary="boxplots of the Table 3.1 deviations"),
    ThesisItem("Table 4.1", "table_4_1", "table", 4, "4.3.1",
               "Overview of bounds for first and second derivatives of some activation functions",
               topics=("Algorithm 4.1", "ACTIVATION_DERIVATIVE_BOUNDS"),
               summary="derivative bounds: closed form vs numerical maximum",
               file_caption=("Table 4.1: Bounds on the first and second derivatives of activation functions: found "
                             "numerically, the thesis's printed closed forms, the analytic suprema and the values the "
                             "bounds engine uses")),
    ThesisItem("Table 4.2", "table_4_2", "table", 4, "4.3.2", "Test results on random MLPs",
               topics=("Theorem 4.2", "Algorithm 4.1", "mlp_bound"),
               summary="random MLPs: FGS norm - bound of Theorem 4.2"),
    ThesisItem("Figure 4.1", "figure_4_1", "figure", 4, "4.3.2", "Boxplots of average bound deviations for MLP tests",
               topics=("Theorem 4.2", "Algorithm 4.1", "Table 4.2", "mlp_bound"),
               summary="boxplots of the Table 4.2 deviations"),
    ThesisItem("Section 4.3.2", "section_4_3_2", "table", 4, "4.3.2",
               "Accuracies of the MLPs trained on Iris, Wine and Spambase (stated in the text)",
               topics=("trained MLP",), published_keys=("trained_mlps",),
               summary="test accuracies of the Iris, Wine, Spambase MLPs",
               file_caption="Section 4.3.2: accuracies of the trained MLPs (tanh, standardized, 70/20/10 split)"),
    ThesisItem("Table 4.3", "table_4_3", "table", 4, "4.3.2", "Trained MLP statistics of bound deviations",
               topics=("Theorem 4.2", "Algorithm 4.1", "mlp_bound"),
               summary="trained MLPs: FGS norm - bound"),
    ThesisItem("Figure 4.2", "figure_4_2", "figure", 4, "4.3.2",
               "Boxplots of deviations of adversarial perturbations from the theoretical bound in trained MLPs",
               topics=("Theorem 4.2", "Table 4.3", "mlp_bound"),
               summary="boxplots of the Table 4.3 deviations"),
    ThesisItem("Figure 4.3", "figure_4_3", "figure", 4, "4.4",
               "Accuracy, error rate and minimal adversarial perturbations when regularizing only the output layer",
               topics=("Section 4.4", "regularizer", "regularization"), data_files=("figures/figure_4_3.csv",),
               summary="regularization sweep: accuracy, FGS/FGV error rate, minimal perturbation vs l"),
    ThesisItem("Figure 5.1", "figure_5_1", "figure", 5, "5.1.1", "Some MNIST samples",
               summary="MNIST samples"),
    _literature("Figure 5.2", 5, "5.1.1", "Schematic diagram of LeNet-5 architecture", _DIAGRAM),
    ThesisItem("Figure 5.3", "figure_5_3", "figure", 5, "5.1.2", "Some CIFAR-10 samples",
               summary="CIFAR-10 samples"),
    _literature("Figure 5.4", 5, "5.1.3", "AlexNet architecture", _DIAGRAM),
    _literature("Figure 5.5", 5, "5.1.5", "GoogLeNet architecture", _DIAGRAM),
    _literature("Figure 5.6", 5, "5.1.5", "Inception module with dimensionality reductions", _DIAGRAM),
    _literature("Figure 5.7", 5, "5.1.6", "Shortcut connections in ResNet", _DIAGRAM),
    ThesisItem("Table 5.1", "table_5_1", "table", 5, "5.3",
               "Theoretical and empirical robustness bounds on different convolutional networks",
               topics=("Algorithm 5.1", "Section 5.2", "model_bounds", "LeNet-5", "CIFAR-NIN", "pooling",
                       "Batch Normalization", "Local Response", "LRN", "convolution", "Theorem 5.1",
                       "Theorem 5.3", "Theorem 5.6", "Theorem 5.9", "Lemma A.4"),
               summary="normalized theoretical and empirical bounds, FGS rate (both normalizations)",
               file_caption=("Table 5.1: theoretical and empirical robustness bounds. Mean theoretical bound over all "
                             "test samples and mean FGS perturbation norm over the flipped samples (pixel units), "
                             "normalized per pixel (H*W, as the published numbers were) and per input component "
                             "(C*H*W, as the text says); rate = fraction of test samples FGS flipped with eps <= "
                             "eps_max.")),
    ThesisItem("Section 5.3.1", "section_5_3_1", "text", 5, "5.3.1",
               "LeNet-5 and CIFAR-NIN: accuracy, unflipped samples and adversarial target classes",
               topics=("LeNet-5", "CIFAR-NIN"), published_keys=("section_5_3_1", "lenet5"),
               sources=("results/attacks/lenet5.csv", "results/attacks/cifar_nin.csv",
                        "results/models/lenet5.metrics.json", "results/models/cifar_nin.metrics.json")),
    ThesisItem("Figure 5.8", "figure_5_8", "figure", 5, "5.3.1", "Selection of adversarial examples for LeNet-5",
               summary="LeNet-5 adversarial examples"),
    ThesisItem("Figure 5.9", "figure_5_9", "figure", 5, "5.3.1", "Selection of adversarial examples for CIFAR-NIN",
               published_keys=("figure_5_9_examples",),
               summary="CIFAR-NIN adversarial examples"),
    ThesisItem("Figure 5.10", "figure_5_10", "figure", 5, "5.3.1",
               "Heatmap of adversarial perturbations on the different CNNs", published_keys=("section_5_3_1",),
               data_files=("figures/figure_5_10_counts.csv",),
               summary="heatmaps: original vs adversarial class"),
    ThesisItem("Table 5.2", "table_5_2", "table", 5, "5.3", "Statistics of epsilon values for the different CNNs",
               topics=("Algorithm 2.1", "minimal_epsilon_search", "FGS"),
               summary="FGS epsilon statistics, LeNet-5 and CIFAR-NIN",
               file_caption=("Table 5.2: statistics of the minimal FGS epsilon (pixel units) over the flipped test "
                             "samples.")),
    ThesisItem("Figure 5.11", "figure_5_11", "figure", 5, "5.3", "Boxplots of epsilon values for the different CNNs",
               topics=("Table 5.2", "Algorithm 2.1", "minimal_epsilon_search"),
               summary="boxplots of FGS epsilon"),
    ThesisItem("Figure 5.12", "figure_5_12", "figure", 5, "5.4",
               "Relative increase in theoretical robustness obtained by scaling kernel tensors",
               data_files=("figures/figure_5_12.csv",),
               summary="(1-eps)^-n curve, plus our LeNet's measured ratio"),
    ThesisItem("Figure 5.13", "figure_5_13", "figure", 5, "5.4",
               "Relative increase in theoretical robustness obtained by increasing per-layer robustness",
               topics=("eq. 5.13", "(5.13)"), data_files=("figures/figure_5_13.csv",),
               summary="relative robustness gain vs depth, plus our LeNet's kappas"),
    ThesisItem("Table 5.3", "table_5_3", "table", 5, "5.4.1", "Summary of epsilon values for the LeNet-LRN networks",
               topics=("LRN", "Local Response", "LeNet-LRN", "Theorem 5.9", "Lemma 5.8", "Lemma 5.11"),
               summary="LeNet-LRN1/2/3: accuracy, epsilon statistics, rate",
               file_caption=("Table 5.3: accuracy, minimal FGS epsilon statistics (flipped samples, pixel units) and "
                             "flip rate of the LeNet-LRN networks (and reference LeNet-5 rows). Beyond the thesis: the "
                             "mean sound (corrected) bound, and the mean certified radius, which LRN networks do not "
                             "get: the verifier has no bound for LRN, and with k = 1 LRN's Lipschitz constant is at "
                             "least 1 (its Jacobian at 0 is the identity), so an LRN layer can never raise a sound "
                             "bound.")),
)

@dataclass(frozen=True)
class ExtraArtifact(_Staged):
    """An artifact the pipeline adds beside the thesis's items. One whose key extends an item's key
    (``figure_2_5_lenet5``) is a variant of that item, listed in its README row."""

    key: str
    kind: str  # "table" | "figure"
    chapter: int
    label: str
    caption: str
    summary: str
    built_by: int | None = None
    #: for a family of files, one per experiment (``sandwich_{name}``): the file the README names
    example: str | None = None
    #: for a table of the report's verdicts: the thesis items whose verdicts it gathers, in order
    compares: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return artifact_paths(self.example or self.key, self.kind)

    def matches(self, key: str) -> bool:
        """``key`` is this artifact, or a member of its family (``sandwich_{name}``)."""
        if "{" not in self.key:
            return key == self.key
        prefix = self.key.split("{", 1)[0]
        return key.startswith(prefix) and len(key) > len(prefix)


EXTRAS: tuple[ExtraArtifact, ...] = (
    ExtraArtifact("figure_2_5_lenet5", "figure", 2, "Figure 2.5 (LeNet-5)",
                  "Iterative perturbation of an MNIST test image by our LeNet-5: the Section 2.7 procedure "
                  "on the second network (not in the thesis)", "the same for LeNet-5", built_by=5),
    ExtraArtifact("comparison_chapters34", "table", 4, "Chapters 3-4",
                  "Our numbers of Tables 3.1, 4.2 and 4.3 beside the published ones, with the report's verdicts",
                  "our numbers beside the published ones",
                  compares=("table_3_1", "table_4_2", "table_4_3", "section_4_3_2")),
    ExtraArtifact("sandwich_{name}", "figure", 5, "Sandwich (per experiment)",
                  "Per test sample, sorted by the best attack: the thesis bound, the sound corrected bound, the "
                  "certified radius, the exact minimum where known, every minimal-L2 attack and FGS (beyond the "
                  "thesis); one per Table 3.1 test, Table 4.2 test, trained MLP and CNN",
                  "thesis bound, sound bound, certified radius, exact minimum, attacks, per sample (one per "
                  "experiment of Chapters 3-5)",
                  built_by=5, example="sandwich_lenet5"),
    ExtraArtifact("sandwich_summary", "table", 5, "Sandwich summary",
                  "How tight are the bounds? Medians of every lower bound and attack, their ratios, and the "
                  "count of samples where an inequality of the chain fails, one row per experiment",
                  "medians, neighbour ratios and violations of the chain, per experiment", built_by=5),
    ExtraArtifact("protocol_study", "table", 5, "Protocol study",
                  "Which reading of the thesis's FGS protocol (M, halvings, returned point, statistics over flipped "
                  "or all samples, bound unit) reproduces Tables 3.1-5.3, derived from the main run's samples",
                  "candidate protocols fitted to every published table of Chapters 3-5", built_by=5),
)
EXTRA_BY_KEY = {extra.key: extra for extra in EXTRAS}


def find_extra(key: str) -> ExtraArtifact | None:
    """The extra artifact ``key`` is, or belongs to the family of."""
    return EXTRA_BY_KEY.get(key) or next((e for e in EXTRAS if e.matches(key)), None)
#: the report page, and every verdict of it as one table (for notebooks and tests)
REPORT_HTML = f"{FIGURES_DIR}/report.html"
REPORT_VERDICTS = "results/report/verdicts.csv"
REPORT_ROW = ("Report", "every result beside the published value, with verdicts and provenance", REPORT_HTML)

BY_KEY = {item.key: item for item in CATALOG}
BY_LABEL = {item.label: item for item in CATALOG}


def generated_items() -> list[ThesisItem]:
    """Items the pipeline produces an artifact for (the ones a snakemake target exists for)."""
    return [item for item in CATALOG if item.files]


def _kind(key: str) -> str:
    """``table`` or ``figure``: the kind of catalog entry ``key`` (a thesis item or an extra
    artifact). A key that extends an item's key (``figure_2_5_<model>``), or holds a Snakemake
    wildcard (``figure_{label}``), is a figure or table by its prefix."""
    entry = BY_KEY.get(key) or find_extra(key)
    kind = entry.kind if entry is not None else next((k for k in SUFFIXES if key.startswith(k + "_")), None)
    if kind not in SUFFIXES or (isinstance(entry, ThesisItem) and not entry.files):
        raise KeyError(f"{key!r} is no figure or table the pipeline writes")
    return kind


def artifact_files(key: str) -> list[str]:
    """The files one rule writes for catalog entry ``key`` (see :func:`_kind`; the data files beside
    a figure are separate outputs, ``data_files``)."""
    return list(artifact_paths(key, _kind(key)))


def table_caption(key: str) -> str:
    """The caption table ``key``'s files carry (its CSV has none; the Markdown and TeX files do)."""
    item = BY_KEY[key]
    return item.file_caption or f"{item.label}: {item.caption}"


def shown_file(key: str) -> str:
    """The one file of table or figure ``key`` that the report reads and shows: a table's CSV, a
    figure's PNG (``figures/table_5_2.csv``, ``figures/sandwich_lenet5.png``)."""
    return f"{FIGURES_DIR}/{key}.{SHOWN_SUFFIX[_kind(key)]}"


def compared_files(key: str) -> list[str]:
    """The tables a verdict table (an extra artifact with ``compares``) reads: each compared item's
    CSV, which its comparer in :mod:`.comparisons` reads too."""
    return [shown_file(item) for item in EXTRA_BY_KEY[key].compares]


def stage_targets(stage: int, variants: Iterable[str] = ()) -> list[str]:
    """Every file the rules of Chapter ``stage`` write as final artifacts: its items with their data
    files, and its extra artifacts that are not ``figure_2_5_<model>``-style variants, whose
    presence depends on the config; ``variants`` (keys) adds those the config asks for."""
    items = [item for item in generated_items() if item.stage == stage]
    variant_keys = {e.key for e in EXTRAS if any(e.key.startswith(i.key + "_") for i in CATALOG)}
    extras = [e for e in EXTRAS if e.stage == stage and e.key not in variant_keys and "{" not in e.key]
    files = [f for item in items for f in item.files] + [f for extra in extras for f in extra.files]
    return files + [f for key in variants for f in artifact_files(key)]


def catalog_targets() -> list[str]:
    """Every artifact file of every generated item (what the chapter rules must produce)."""
    return [path for item in generated_items() for path in item.files]


def compact_files(files: Iterable[str]) -> str:
    """``figures/a.pdf, figures/a.png, figures/b.csv`` -> ``figures/a.{pdf,png}, figures/b.csv``."""
    groups: dict[str, list[str]] = {}
    for path in files:
        stem, _, suffix = path.rpartition(".")
        groups.setdefault(stem, []).append(suffix)
    return ", ".join(f"{stem}.{{{','.join(s)}}}" if len(s) > 1 else f"{stem}.{s[0]}" for stem, s in groups.items())


def readme_table() -> str:
    """The README's artifact table (between its ``artifact-table`` markers): one row per generated
    item with its variants, the extra artifacts after the last item of their chapter, the report."""
    def row(label: str, summary: str, target: str, files: Iterable[str]) -> str:
        return f"| {label} | {summary} | `snakemake --cores all {target}` | {compact_files(files)} |"

    items = generated_items()
    variants = {item.key: [e for e in EXTRAS if e.key.startswith(item.key + "_")] for item in items}
    placed = {e.key for group in variants.values() for e in group}
    last_of_chapter = {item.chapter: item.key for item in items}
    lines = ["| thesis label | what it shows | snakemake target | output files |", "|---|---|---|---|"]
    for item in items:
        files = list(item.files) + [f for extra in variants[item.key] for f in extra.files]
        lines.append(row(item.label, item.summary or item.caption, item.target, files))
        if last_of_chapter[item.chapter] == item.key:
            lines += [row(e.label, e.summary, e.files[0], e.files) for e in EXTRAS
                      if e.chapter == item.chapter and e.key not in placed]
    label, summary, target = REPORT_ROW
    lines.append(row(label, summary, target, [target]))
    return "\n".join(lines)


def report_inputs(targets: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """The report's artifact inputs: every final target of the run, once, minus ``exclude``."""
    skip = set(exclude)
    return [t for t in dict.fromkeys(targets) if t not in skip]


def source_files(config: Mapping[str, Any]) -> list[str]:
    """Per-model files the report reads besides the figures: the items' ``sources`` of the models
    the config trains, and the per-sample sandwich of every experiment ("Beyond the thesis")."""
    from advbounds.config import sandwich_experiments

    trained = (config.get("chapter5") or {}).get("models", {})
    files = [path for item in CATALOG for path in item.sources
             if path.rpartition("/")[2].split(".", 1)[0] in trained]
    return files + [f"results/sandwich/{name}.csv" for name in sandwich_experiments(config)]


def _gallery_file(path: str) -> str | None:
    """The key of ``path`` when Snakemake's own report shows it: a figure's PNG or a table's CSV
    (:data:`SHOWN_SUFFIX`), of a thesis item or of an extra artifact."""
    stem, _, suffix = path.removeprefix(f"{FIGURES_DIR}/").rpartition(".")
    item = BY_KEY.get(stem)
    entry = item if item is not None and item.generated else (find_extra(stem) if item is None else None)
    return stem if entry is not None and SHOWN_SUFFIX.get(entry.kind) == suffix else None


def gallery_sources(targets: Iterable[str]) -> list[str]:
    """The PNG of every figure and the CSV of every table among ``targets``, thesis items and
    extra artifacts alike (Snakemake's own ``--report`` shows them)."""
    return [path for path in dict.fromkeys(targets) if path.startswith(f"{FIGURES_DIR}/") and _gallery_file(path)]


def gallery_chapter(key: str) -> int:
    """The chapter an item or extra artifact is filed under."""
    return BY_KEY[key].chapter if key in BY_KEY else find_extra(key).chapter


def gallery_captions(targets: Iterable[str]) -> dict[str, str]:
    """``key -> "label: caption"`` of every file ``gallery_sources`` picks: the thesis's own caption,
    which the caption template of Snakemake's report shows (workflow/report/thesis_item.rst)."""
    captions = {}
    for path in gallery_sources(targets):
        key = _gallery_file(path)
        entry = BY_KEY.get(key) or find_extra(key)
        label = entry.label if entry.key == key else f"{entry.label.split(' (')[0]}: {key.split('_', 1)[1]}"
        captions[key] = f"{label}: {entry.caption}"
    return captions


README_MARKERS = ("<!-- artifact-table:start -->\n", "\n<!-- artifact-table:end -->")


def update_readme(path: str = "README.md") -> bool:
    """Rewrite the artifact table of the README at ``path`` from the catalog; True if it changed."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}{readme_table()}{end}{tail}"
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m advbounds.report.catalog [README.md]: refresh the table
    import sys

    print("updated" if update_readme(*sys.argv[1:2]) else "up to date")

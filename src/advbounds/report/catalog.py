"""Every table and figure of the thesis, and where the pipeline puts its reproduction.

The catalogue is the report's table of contents and the README's "thesis label -> target -> file"
table. Items the thesis took from the literature (architecture diagrams, other papers' images) are
listed too, with ``generated=False`` and the reason, so the report accounts for every label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE_SUFFIXES = ("csv", "md", "tex")
FIGURE_SUFFIXES = ("pdf", "png")


@dataclass(frozen=True)
class ThesisItem:
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
    #: per-sample / intermediate files behind the item (for notebooks and the text items)
    sources: tuple[str, ...] = ()
    #: paper_values.yaml keys whose numbers this item is compared with (default: its own key)
    published_keys: tuple[str, ...] = field(default=())
    #: data behind a figure, written beside it (e.g. the curve of Figure 5.12 as CSV)
    data_files: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """The artifacts the pipeline writes for this item (none for text items / literature)."""
        if not self.generated or self.kind == "text":
            return ()
        suffixes = TABLE_SUFFIXES if self.kind == "table" else FIGURE_SUFFIXES
        return tuple(f"figures/{self.key}.{suffix}" for suffix in suffixes) + self.data_files

    @property
    def target(self) -> str | None:
        """The file to ask snakemake for (``snakemake --cores all <target>``)."""
        if not self.files:
            return None
        return self.files[0]

    @property
    def image(self) -> str | None:
        return f"figures/{self.key}.png" if self.generated and self.kind == "figure" else None

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
               "Some examples of commonly used activation functions", topics=("Table 4.1",)),
    _literature("Figure 2.2", 2, "2.4.2", "Graphical depiction of an MLP with one hidden layer", _DIAGRAM),
    _literature("Figure 2.3", 2, "2.4.3", "A typical CNN architecture", _DIAGRAM),
    _literature("Figure 2.4", 2, "2.5.5", "Example of adversarial perturbations from Szegedy et al. 2013",
                _LITERATURE),
    ThesisItem("Figure 2.5", "figure_2_5", "figure", 2, "2.7", "Iterative perturbation",
               topics=("Section 2.7", "iterative perturbation")),
    ThesisItem("Figure 3.1", "figure_3_1", "figure", 3, "3.1",
               "Minimal adversarial perturbation for a binary classifier",
               topics=("Lemma 3.1", "Theorem 3.7")),
    ThesisItem("Table 3.1", "table_3_1", "table", 3, "3.3", "Test results on linear classifiers",
               topics=("Lemma 3.5", "Theorem 3.7", "eq. 3.12", "linear_output_bound")),
    ThesisItem("Figure 3.2", "figure_3_2", "figure", 3, "3.3", "Boxplots of bound deviations for linear classifiers",
               topics=("Lemma 3.5", "Table 3.1", "linear_output_bound")),
    ThesisItem("Table 4.1", "table_4_1", "table", 4, "4.3.1",
               "Overview of bounds for first and second derivatives of some activation functions",
               topics=("Algorithm 4.1", "ACTIVATION_DERIVATIVE_BOUNDS")),
    ThesisItem("Table 4.2", "table_4_2", "table", 4, "4.3.2", "Test results on random MLPs",
               topics=("Theorem 4.2", "Algorithm 4.1", "mlp_bound")),
    ThesisItem("Figure 4.1", "figure_4_1", "figure", 4, "4.3.2", "Boxplots of average bound deviations for MLP tests",
               topics=("Theorem 4.2", "Algorithm 4.1", "Table 4.2", "mlp_bound")),
    ThesisItem("Section 4.3.2", "section_4_3_2", "table", 4, "4.3.2",
               "Accuracies of the MLPs trained on Iris, Wine and Spambase (stated in the text)",
               topics=("trained MLP",), published_keys=("trained_mlps",)),
    ThesisItem("Table 4.3", "table_4_3", "table", 4, "4.3.2", "Trained MLP statistics of bound deviations",
               topics=("Theorem 4.2", "Algorithm 4.1", "mlp_bound")),
    ThesisItem("Figure 4.2", "figure_4_2", "figure", 4, "4.3.2",
               "Boxplots of deviations of adversarial perturbations from the theoretical bound in trained MLPs",
               topics=("Theorem 4.2", "Table 4.3", "mlp_bound")),
    ThesisItem("Figure 4.3", "figure_4_3", "figure", 4, "4.4",
               "Accuracy, error rate and minimal adversarial perturbations when regularizing only the output layer",
               topics=("Section 4.4", "regularizer", "regularization"), data_files=("figures/figure_4_3.csv",)),
    ThesisItem("Figure 5.1", "figure_5_1", "figure", 5, "5.1.1", "Some MNIST samples"),
    _literature("Figure 5.2", 5, "5.1.1", "Schematic diagram of LeNet-5 architecture", _DIAGRAM),
    ThesisItem("Figure 5.3", "figure_5_3", "figure", 5, "5.1.2", "Some CIFAR-10 samples"),
    _literature("Figure 5.4", 5, "5.1.3", "AlexNet architecture", _DIAGRAM),
    _literature("Figure 5.5", 5, "5.1.5", "GoogLeNet architecture", _DIAGRAM),
    _literature("Figure 5.6", 5, "5.1.5", "Inception module with dimensionality reductions", _DIAGRAM),
    _literature("Figure 5.7", 5, "5.1.6", "Shortcut connections in ResNet", _DIAGRAM),
    ThesisItem("Table 5.1", "table_5_1", "table", 5, "5.3",
               "Theoretical and empirical robustness bounds on different convolutional networks",
               topics=("Algorithm 5.1", "Section 5.2", "model_bounds", "LeNet-5", "CIFAR-NIN", "pooling",
                       "Batch Normalization", "Local Response", "LRN", "convolution", "Theorem 5.1",
                       "Theorem 5.3", "Theorem 5.6", "Theorem 5.9", "Lemma A.4")),
    ThesisItem("Section 5.3.1", "section_5_3_1", "text", 5, "5.3.1",
               "LeNet-5 and CIFAR-NIN: accuracy, unflipped samples and adversarial target classes",
               topics=("LeNet-5", "CIFAR-NIN"), published_keys=("section_5_3_1", "lenet5")),
    ThesisItem("Figure 5.8", "figure_5_8", "figure", 5, "5.3.1", "Selection of adversarial examples for LeNet-5"),
    ThesisItem("Figure 5.9", "figure_5_9", "figure", 5, "5.3.1", "Selection of adversarial examples for CIFAR-NIN",
               published_keys=("figure_5_9_examples",)),
    ThesisItem("Figure 5.10", "figure_5_10", "figure", 5, "5.3.1",
               "Heatmap of adversarial perturbations on the different CNNs", published_keys=("section_5_3_1",),
               data_files=("figures/figure_5_10_counts.csv",)),
    ThesisItem("Table 5.2", "table_5_2", "table", 5, "5.3", "Statistics of epsilon values for the different CNNs",
               topics=("Algorithm 2.1", "minimal_epsilon_search", "FGS")),
    ThesisItem("Figure 5.11", "figure_5_11", "figure", 5, "5.3", "Boxplots of epsilon values for the different CNNs",
               topics=("Table 5.2", "Algorithm 2.1", "minimal_epsilon_search")),
    ThesisItem("Figure 5.12", "figure_5_12", "figure", 5, "5.4",
               "Relative increase in theoretical robustness obtained by scaling kernel tensors",
               data_files=("figures/figure_5_12.csv",)),
    ThesisItem("Figure 5.13", "figure_5_13", "figure", 5, "5.4",
               "Relative increase in theoretical robustness obtained by increasing per-layer robustness",
               topics=("eq. 5.13", "(5.13)"), data_files=("figures/figure_5_13.csv",)),
    ThesisItem("Table 5.3", "table_5_3", "table", 5, "5.4.1", "Summary of epsilon values for the LeNet-LRN networks",
               topics=("LRN", "Local Response", "LeNet-LRN", "Theorem 5.9", "Lemma 5.8", "Lemma 5.11")),
)

BY_KEY = {item.key: item for item in CATALOG}
BY_LABEL = {item.label: item for item in CATALOG}


def generated_items() -> list[ThesisItem]:
    """Items the pipeline produces an artifact for (the ones a snakemake target exists for)."""
    return [item for item in CATALOG if item.files]


def catalog_targets() -> list[str]:
    """Every artifact file of every generated item (what the chapter rules must produce)."""
    return [path for item in generated_items() for path in item.files]


def readme_rows() -> list[tuple[str, str, str]]:
    """The README table: thesis label -> snakemake target -> output files."""
    rows = []
    for item in CATALOG:
        if item.files:
            rows.append((f"{item.label}: {item.caption}", f"`snakemake --cores all {item.target}`",
                         ", ".join(f"`{f}`" for f in item.files)))
    rows.append(("All of the above beside the published values", "`snakemake --cores all figures/report.html`",
                 "`figures/report.html`"))
    return rows


#: models whose per-sample attacks and metrics the report reads directly (Section 5.3.1's numbers)
SOURCE_MODELS = ("lenet5", "cifar_nin")


def report_inputs(targets: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """The report's artifact inputs: every final target of the run, once, minus ``exclude``."""
    skip = set(exclude)
    return [t for t in dict.fromkeys(targets) if t not in skip]


def source_files(config: Mapping[str, Any]) -> list[str]:
    """Per-model files the report reads besides the figures, for the models the config trains."""
    models = [m for m in SOURCE_MODELS if m in (config.get("chapter5") or {}).get("models", {})]
    return [f"results/attacks/{m}.csv" for m in models] + [f"results/models/{m}.metrics.json" for m in models]


def gallery_sources(targets: Iterable[str]) -> list[str]:
    """The PNG of every thesis figure and the CSV of every thesis table among ``targets``."""
    present = set(targets)
    wanted = [item.image if item.kind == "figure" else f"figures/{item.key}.csv"
              for item in generated_items()]
    return [path for path in wanted if path in present]

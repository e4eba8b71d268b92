"""The protocol study: which reading of the thesis's FGS protocol reproduces each published table?

The thesis states its protocol only in part (Algorithm 2.1 in 2.5.2, M = 100 for the image sets in
5.3.1), and its stated protocol does not reproduce several tables (docs/chapters34.md,
docs/chapter5.md). This module evaluates a family of candidate protocols (*readings*) against every
published table of Chapters 3-5 (3.1, 4.2, 4.3, 5.1, 5.2, 5.3), on the main run's own models and
samples, without running a model again: every candidate is derived post hoc from the main run's
per-sample results (the converged search's minimal epsilon, the FGS direction's norm, the bound).

The dimensions of a reading (:class:`Protocol`), and the thesis text behind each:

* ``eps_max``: Algorithm 2.1's upper limit M. 2.5.2: "M depends upon the data set in question";
  5.3.1: the image sets' epsilon "was upper-bounded by 100 instead of 1", which suggests M = 1
  elsewhere. The thesis states M only for Chapter 5, so every reading keeps the stated 100 there
  and varies M for Tables 3.1, 4.2 and 4.3 (``None``: the main run's M).
* ``eps_max_scale``: ``absolute`` (one M for every test) or ``half_width`` (M times the half-width
  of the test's sample interval; "depends upon the data set"). Trained MLPs: standardized data,
  half-width 1.
* ``halvings``: how many times the search halved [0, M] (Algorithm 2.1 loops "while u - l > 0",
  which states no tolerance). ``None``: converged (the main run's ``tol``); ``0``: no search at
  all, one FGS step at eps = M.
* ``returned``: the epsilon returned after the last halving: ``upper`` (the bracket's upper end,
  which was seen to flip the label, as the pipeline reports) or ``midpoint`` (Algorithm 2.1's
  literal ``return eps`` after ``eps <- l + (u - l)/2``, which need not flip the label).
* ``population``: the samples the statistics run over: ``flipped`` (an unflipped sample is
  dropped) or ``all`` (it is kept at the value the search returns for it: M, or M - h/2 for a
  midpoint search of step h). The issue's "unflipped samples: dropped or kept" and "statistics over
  all or over flipped samples" are this one choice for per-sample statistics; Table 5.1's
  theoretical column is over all samples either way (5.3: "averaging over all samples").
* ``bound_unit``: the unit of the Chapter 5 bound in Table 5.1: ``scaled`` (the network's input
  after its 1/256 ``Scale``, Caffe's scaled blob; the report's own reading, ``report.comparisons``'s
  Table 5.1 spec compares the published bound with ``normalized_theoretical_bound_per_pixel_scaled``)
  or ``pixels`` (the unit of the epsilons: the pixel-unit column meets the published bound).

What the main run cannot give, and the study therefore does not cover: a larger M than the main
run's (such cells are ``missing``), another sample set (Table 4.3 on all data instead of the test
split) and another reading of Table 4.2's "Layers" (one hidden layer): both need new model runs.

What each derivation assumes:

* the FGS perturbation of any epsilon is ``eps * direction_norm``: the sign vector does not depend on
  epsilon. Exact.
* a search of k halvings of the **same** [0, M] as a converged bisection is that bisection's first k
  steps, so it ends in the grid cell ``((j - 1) h, j h]`` (h = M / 2^k) that holds the converged eps
  and returns ``j h`` (upper) or ``(j - 1/2) h`` (midpoint). Exact for the bisections of Chapters 3-4
  (up to the main run's tolerance when eps lies within it of a grid point); Chapter 5's regula falsi
  finds the same cell only where the label flips once along the ray (docs/attacks.md).
* a smaller M' < M flips exactly the samples with eps <= M', and a search of [0, M'] finds the same
  eps: true when the label flips **monotonically** in epsilon along the FGS ray (once flipped at eps,
  flipped at every larger eps), which the bisection itself assumes. Exact for linear classifiers
  (Table 3.1: a class's cell is convex, the ray leaves it once), not in general for MLPs. Where the
  main run has a real search over the reading's [0, M'] (Chapter 4's reference search, the ``ref_*``
  columns) the study uses it instead, and :func:`monotonicity_check` measures how far the cut of
  the main search is from it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advbounds.artifacts import write_table
from advbounds.experiments import cnn_summary, linear, mlp_summary
from advbounds.io import write_frame, write_text
from advbounds.report.comparisons import TABLE_SPECS
from advbounds.report.compare import REPRODUCED, Tolerance, compare_table

#: Table 5.1's mean theoretical bound per pixel, in the two units (``experiments.cnn_summary.table_5_1``)
PIXEL_BOUND = "normalized_theoretical_bound_per_pixel"
SCALED_BOUND = "normalized_theoretical_bound_per_pixel_scaled"
#: the published tables the study fits, in thesis order
TABLES = ("table_3_1", "table_4_2", "table_4_3", "table_5_1", "table_5_2", "table_5_3")
#: the tables whose M the thesis does not state (Chapter 5's is 100, 5.3.1)
UNSTATED_M_TABLES = ("table_3_1", "table_4_2", "table_4_3")

SCALES = ("absolute", "half_width")
RETURNED = ("upper", "midpoint")
POPULATIONS = ("flipped", "all")
BOUND_UNITS = ("pixels", "scaled")

#: the dimensions of a reading, in column order
DIMENSIONS = ("eps_max", "eps_max_scale", "halvings", "returned", "population", "bound_unit")

#: the dimensions each table reads; the others cannot change it
TABLE_DIMENSIONS: dict[str, tuple[str, ...]] = {
    **{t: ("eps_max", "eps_max_scale", "halvings", "returned", "population") for t in UNSTATED_M_TABLES},
    "table_5_1": ("halvings", "returned", "population", "bound_unit"),
    "table_5_2": ("halvings", "returned", "population"),
    "table_5_3": ("halvings", "returned", "population"),
}

CELL_COLUMNS = ("table", "reading", *DIMENSIONS, "quantity", "thesis", "ours", "relative_error", "verdict",
                "within_tolerance")
FIT_COLUMNS = ("reading", *DIMENSIONS, "free_choices", "table", "cells", "within_tolerance", "median_relative_error",
               "explained")


@dataclass(frozen=True)
class Protocol:
    """One reading of the protocol (module docstring: what each field means and why)."""

    eps_max: float | None = None
    eps_max_scale: str = "absolute"
    halvings: int | None = None
    returned: str = "upper"
    population: str = "flipped"
    bound_unit: str = "scaled"

    def __post_init__(self) -> None:
        if self.eps_max is not None and not (math.isfinite(self.eps_max) and self.eps_max > 0):
            raise ValueError(f"protocol eps_max must be a finite number > 0 or None, got {self.eps_max!r}")
        if self.halvings is not None and (isinstance(self.halvings, bool) or not isinstance(self.halvings, int)
                                          or self.halvings < 0):
            raise ValueError(f"protocol halvings must be an integer >= 0 or None, got {self.halvings!r}")
        for name, valid in (("eps_max_scale", SCALES), ("returned", RETURNED), ("population", POPULATIONS),
                            ("bound_unit", BOUND_UNITS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"protocol {name} must be one of {valid}, got {getattr(self, name)!r}")

    def canonical(self) -> Protocol:
        """The same reading with the choices that cannot matter set to the stated protocol's: a scale
        without an M of its own, a returned point without a bisection."""
        out = self
        if out.eps_max is None:
            out = replace(out, eps_max_scale=STATED.eps_max_scale)
        if not out.halvings:  # converged (None) or no search (0): no bracket to return a point of
            out = replace(out, returned=STATED.returned)
        return out

    def for_table(self, table: str) -> Protocol:
        """This reading as ``table`` sees it: the dimensions it does not read at the stated values."""
        keep = TABLE_DIMENSIONS[table]
        return replace(STATED, **{name: getattr(self, name) for name in keep}).canonical()

    def free_choices(self) -> int:
        """How many dimensions depart from the thesis's stated protocol (:data:`STATED`)."""
        return sum(getattr(self, name) != getattr(STATED, name) for name in DIMENSIONS)

    @property
    def label(self) -> str:
        m = "M as run" if self.eps_max is None else (
            f"M = {self.eps_max:g}" + (" x half-width" if self.eps_max_scale == "half_width" else ""))
        search = ("converged search" if self.halvings is None else "no search (one step at M)"
                  if self.halvings == 0 else f"{self.halvings} halvings, {self.returned}")
        return f"{m}; {search}; over {self.population}; bound in {self.bound_unit}"

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DIMENSIONS}


#: the thesis's stated protocol, as the main run reads it (what the report compares today): the
#: main run's M, a converged Algorithm 2.1, statistics over the flipped samples, bounds in pixels
STATED = Protocol()


@dataclass(frozen=True)
class ProtocolFamily:
    """Config ``protocol_study``: the values of each dimension; the family is their product
    (canonicalized, so no reading appears twice). ``explained_fraction``: a table counts as
    explained by a reading when at least this fraction of its cells is within the report's
    tolerance."""

    eps_max: tuple[float | None, ...]
    eps_max_scale: tuple[str, ...]
    halvings: tuple[int | None, ...]
    returned: tuple[str, ...]
    population: tuple[str, ...]
    bound_unit: tuple[str, ...]
    explained_fraction: float

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            if not getattr(self, name):
                raise ValueError(f"protocol_study.{name} must list at least one value")
        if not 0 < self.explained_fraction <= 1:
            raise ValueError(f"protocol_study.explained_fraction must be in (0, 1], got {self.explained_fraction!r}")
        self.readings()  # every value valid (Protocol validates itself)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> ProtocolFamily:
        missing = [name for name in (*DIMENSIONS, "explained_fraction") if name not in section]
        if missing:
            raise ValueError(f"protocol_study lacks {missing}")
        unknown = sorted(set(section) - {*DIMENSIONS, "explained_fraction"})
        if unknown:
            raise ValueError(f"protocol_study has unknown keys {unknown}")
        return cls(
            eps_max=tuple(None if v is None else float(v) for v in section["eps_max"]),
            eps_max_scale=tuple(section["eps_max_scale"]),
            halvings=tuple(section["halvings"]),
            returned=tuple(section["returned"]),
            population=tuple(section["population"]),
            bound_unit=tuple(section["bound_unit"]),
            explained_fraction=float(section["explained_fraction"]),
        )

    def readings(self) -> list[Protocol]:
        """Every reading of the family, the stated protocol first."""
        out = {STATED: None}
        for values in itertools.product(*(getattr(self, name) for name in DIMENSIONS)):
            out.setdefault(Protocol(**dict(zip(DIMENSIONS, values))).canonical(), None)
        return list(out)


# ------------------------------------------------------------------------------------------------
# Post-hoc derivation of one reading from a converged search
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    """What a reading's search gives each sample: ``eps`` (NaN outside the statistics), the
    statistics' sample set ``counted``, and which samples the search ``flipped`` (for rates)."""

    eps: np.ndarray
    counted: np.ndarray
    flipped: np.ndarray


def rederive(eps: Any, *, run_eps_max: float, eps_max: float, halvings: int | None, returned: str,
             population: str) -> Search:
    """The search a reading with upper limit ``eps_max`` would have run, from the converged minimal
    epsilons ``eps`` of the main run (upper limit ``run_eps_max``; NaN: not flipped within it).

    A smaller ``eps_max`` assumes monotone flipping in epsilon (module docstring). An ``eps_max`` above
    ``run_eps_max`` cannot be derived (the main run never looked there): every sample is NaN and
    uncounted, and the table's cells come out ``missing``.
    """
    eps = np.asarray(eps, dtype=float)
    if eps_max > run_eps_max * (1 + 1e-12):
        nothing = np.zeros(eps.shape, dtype=bool)
        return Search(np.full(eps.shape, math.nan), nothing, nothing)
    flipped = np.isfinite(eps) & (eps <= eps_max)
    if halvings is None:
        found, never = eps, float(eps_max)
    elif halvings == 0:
        found, never = np.full(eps.shape, float(eps_max)), float(eps_max)
    else:
        step = eps_max / 2.0 ** halvings
        # the grid cell ((j - 1) h, j h] holding eps; j >= 1 (an eps of 0 flips at the first point)
        cell = np.maximum(np.ceil(np.where(flipped, eps, 0.0) / step), 1.0)
        offset = 0.0 if returned == "upper" else 0.5
        found, never = (cell - offset) * step, eps_max - offset * step
    counted = flipped.copy() if population == "flipped" else np.ones(eps.shape, dtype=bool)
    value = np.where(flipped, found, never)
    return Search(np.where(counted, value, math.nan), counted, flipped)


# ------------------------------------------------------------------------------------------------
# The main run's per-sample results, and each table under a reading
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyInputs:
    """The main run's per-sample results and the settings its tables were made with.

    ``linear``: Table 3.1's specs and per-test frames (``results/linear/test_<k>.csv``) and the run's
    M; ``random_mlp``: Table 4.2's specs (a spec's ``eps_max`` overrides the run's M) and frames;
    ``trained``: Table 4.3's frames by data set and the run's M; ``cnn``: the Chapter 5 entries
    (``advbounds.experiments.cnn_summary.load_entries``) of Tables 5.1-5.2 (``networks``) and of Table 5.3
    (``lrn_networks``), and the run's M. ``atol`` / ``optimal_rtol``: the tables' own settings
    (they only feed columns the study does not compare)."""

    linear_specs: Sequence[Mapping[str, Any]]
    linear_frames: Sequence[pd.DataFrame]
    linear_eps_max: float
    random_specs: Sequence[Mapping[str, Any]]
    random_frames: Sequence[pd.DataFrame]
    random_eps_max: float
    trained_frames: Mapping[str, pd.DataFrame]
    trained_eps_max: float
    networks: Sequence[Mapping[str, Any]]
    lrn_networks: Sequence[Mapping[str, Any]]
    cnn_eps_max: float
    atol: float = 1e-9
    optimal_rtol: float = 1e-4
    #: M of Chapter 4's second (reference) search, the ``ref_*`` columns: tests the derivation
    reference_eps_max: float | None = None


def load_inputs(settings: Mapping[str, Any], *, linear: Sequence[str], random_mlp: Sequence[str],
                trained: Sequence[str], networks: Mapping[str, Sequence[str]],
                lrn_networks: Mapping[str, Sequence[str]]) -> StudyInputs:
    """:class:`StudyInputs` from the main run's files. ``settings``: the rule's config slice
    (``chapter3``: ``tests``, ``eps_max``, ``violation_atol``, ``fgs_optimal_rtol``; ``chapter4``:
    ``tests``, ``eps_max``, ``datasets``, ``trained_eps_max``, optional ``reference_eps_max``; ``chapter5``:
    ``networks``, ``lrn_networks``, ``eps_max``). ``networks`` / ``lrn_networks``: ``attacks``,
    ``bounds``, ``metrics`` file lists in the order of the settings' model lists."""

    ch3, ch4, ch5 = settings["chapter3"], settings["chapter4"], settings["chapter5"]
    if len(linear) != len(ch3["tests"]) or len(random_mlp) != len(ch4["tests"]) or len(trained) != len(ch4["datasets"]):
        raise ValueError("the protocol study got a different number of per-sample files than the config lists tests")
    return StudyInputs(
        linear_specs=list(ch3["tests"]), linear_frames=[pd.read_csv(p) for p in linear],
        linear_eps_max=float(ch3["eps_max"]),
        random_specs=list(ch4["tests"]), random_frames=[pd.read_csv(p) for p in random_mlp],
        random_eps_max=float(ch4["eps_max"]),
        trained_frames={d: pd.read_csv(p) for d, p in zip(ch4["datasets"], trained)},
        trained_eps_max=float(ch4["trained_eps_max"]),
        networks=cnn_summary.load_entries(ch5["networks"], **networks) if ch5["networks"] else [],
        lrn_networks=cnn_summary.load_entries(ch5["lrn_networks"], **lrn_networks) if ch5["lrn_networks"] else [],
        cnn_eps_max=float(ch5["eps_max"]),
        atol=float(ch3["violation_atol"]), optimal_rtol=float(ch3["fgs_optimal_rtol"]),
        reference_eps_max=None if ch4.get("reference_eps_max") is None else float(ch4["reference_eps_max"]),
    )


def half_width(spec: Mapping[str, Any] | None) -> float:
    """Half the width of a test's sample interval; 1 (one standard deviation) for standardized data."""
    if spec is None:
        return 1.0
    low, high = (float(v) for v in spec["sample_interval"])
    return (high - low) / 2.0


def _direction_norm(frame: pd.DataFrame) -> np.ndarray:
    """``||sign(grad)||_2`` per sample of a Chapter 3-4 frame: FGS norm / eps where the sample flipped;
    an unflipped sample gets the median over the flipped ones (sqrt(d) for these dense gradients)."""
    norm = frame["fgs_norm"].to_numpy(dtype=float) / frame["fgs_eps"].to_numpy(dtype=float)
    known = np.isfinite(norm)
    fill = float(np.median(norm[known])) if known.any() else math.nan  # nothing flipped: nothing to go by
    return np.where(known, norm, fill)


def _deviation_frame(frame: pd.DataFrame, protocol: Protocol, *, run_eps_max: float,
                     spec: Mapping[str, Any] | None, reference_eps_max: float | None = None) -> pd.DataFrame:
    """A Chapter 3-4 per-sample frame as ``protocol`` would have written it: ``fgs_*``, ``deviation``
    (and Table 3.1's ``fgs_minus_exact``) recomputed, ``fgs_flipped`` = the counted samples.

    The base is the real search over the reading's own [0, M] where the main run made one (Chapter 4's
    reference search, ``ref_*`` columns, when M equals ``reference_eps_max``), else the main search."""
    scale = half_width(spec) if protocol.eps_max_scale == "half_width" else 1.0
    eps_max = run_eps_max if protocol.eps_max is None else protocol.eps_max * scale
    eps = frame["fgs_eps"]
    if reference_eps_max is not None and "ref_eps" in frame and math.isclose(eps_max, reference_eps_max):
        eps, run_eps_max = frame["ref_eps"].where(frame["ref_flipped"].astype(bool)), reference_eps_max
    search = rederive(eps, run_eps_max=run_eps_max, eps_max=eps_max, halvings=protocol.halvings,
                      returned=protocol.returned, population=protocol.population)
    out = frame.copy()
    out["fgs_eps"] = search.eps
    out["fgs_norm"] = search.eps * _direction_norm(frame)
    out["fgs_flipped"] = search.counted
    out["deviation"] = out["fgs_norm"] - out["bound"]
    if "exact_norm" in out:
        out["fgs_minus_exact"] = out["fgs_norm"] - out["exact_norm"]
    return out


def _attack_entries(entries: Sequence[Mapping[str, Any]], protocol: Protocol,
                    run_eps_max: float) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Chapter 5 entries with their attack frames as ``protocol`` would have written them, and each
    network's flip rate under it (the tables' ``rate`` counts the flipped, not the counted samples)."""
    out, rates = [], {}
    for entry in entries:
        attacks = entry["attacks"]
        eps = attacks["eps"].where(attacks["flipped"].astype(bool))
        search = rederive(eps, run_eps_max=run_eps_max, eps_max=run_eps_max, halvings=protocol.halvings,
                          returned=protocol.returned, population=protocol.population)
        frame = attacks.copy()
        frame["eps"] = search.eps
        frame["perturbation_norm"] = search.eps * attacks["direction_norm"].to_numpy(dtype=float)
        frame["flipped"] = search.counted
        bounds = entry.get("bounds")
        out.append({**entry, "attacks": frame, "bounds": bounds})
        rates[entry["name"]] = float(search.flipped.mean()) if len(search.flipped) else math.nan
    return out, rates


def candidate_table(table: str, protocol: Protocol, inputs: StudyInputs) -> pd.DataFrame:
    """Published table ``table`` as the main run's samples give it under ``protocol``, built by the
    pipeline's own table functions (the one definition of each statistic)."""
    if table == "table_3_1":
        frames = [_deviation_frame(f, protocol, run_eps_max=inputs.linear_eps_max, spec=s)
                  for s, f in zip(inputs.linear_specs, inputs.linear_frames)]
        return linear.table_3_1(inputs.linear_specs, frames, atol=inputs.atol, optimal_rtol=inputs.optimal_rtol)
    if table == "table_4_2":
        frames = [_deviation_frame(f, protocol, run_eps_max=float(s.get("eps_max", inputs.random_eps_max)), spec=s,
                                   reference_eps_max=inputs.reference_eps_max)
                  for s, f in zip(inputs.random_specs, inputs.random_frames)]
        return mlp_summary.table_4_2(inputs.random_specs, frames, atol=inputs.atol)
    if table == "table_4_3":
        frames = {name: _deviation_frame(f, protocol, run_eps_max=inputs.trained_eps_max, spec=None,
                                         reference_eps_max=inputs.reference_eps_max)
                  for name, f in inputs.trained_frames.items()}
        return mlp_summary.table_4_3(frames, atol=inputs.atol)
    if table in ("table_5_1", "table_5_2", "table_5_3"):
        source = inputs.lrn_networks if table == "table_5_3" else inputs.networks
        entries, rates = _attack_entries(source, protocol, inputs.cnn_eps_max)
        if not entries:
            return pd.DataFrame({"network": []})
        built = {"table_5_1": cnn_summary.table_5_1, "table_5_2": cnn_summary.table_5_2, "table_5_3": cnn_summary.table_5_3}[table](entries)
        if "rate" in built:
            built["rate"] = built["network"].map(rates)
        if table == "table_5_1" and protocol.bound_unit == "pixels":
            # the comparer reads the scaled-unit column (module docstring): give it the pixel one
            built[SCALED_BOUND] = built[PIXEL_BOUND]
        return built
    raise KeyError(f"the protocol study has no table {table!r}; known: {', '.join(TABLES)}")


# ------------------------------------------------------------------------------------------------
# Fitting the family
# ------------------------------------------------------------------------------------------------


def compare_candidate(table: str, ours: pd.DataFrame, paper: Mapping[str, Any],
                      report_settings: Mapping[str, Any]) -> pd.DataFrame:
    """Every published cell of ``table`` against ``ours``, through the report's own comparison
    (``advbounds.report.compare.compare_table`` with the report's table spec and tolerance):
    ``quantity, thesis, ours, relative_error, verdict, within_tolerance``."""
    spec = TABLE_SPECS[table]
    tol = Tolerance.from_config(report_settings, spec.tolerance)
    published = paper[spec.published_key or table]
    comparisons = compare_table(table, published, ours.to_dict("records"), tol, key=spec.key,
                                result_columns=spec.result_columns, setup_columns=spec.setup_columns,
                                aliases=spec.aliases, row_aliases=spec.row_aliases)
    rows = []
    for c in comparisons:
        rel = abs(c.ratio - 1.0) if c.ratio is not None else math.nan
        rows.append({"quantity": c.quantity, "thesis": c.published, "ours": c.reproduced,
                     "relative_error": rel, "verdict": c.verdict, "within_tolerance": c.verdict == REPRODUCED})
    return pd.DataFrame(rows, columns=["quantity", "thesis", "ours", "relative_error", "verdict", "within_tolerance"])


@dataclass(frozen=True)
class StudyResult:
    """``cells``: one row per (table, reading as the table sees it, published cell); ``fits``: one row
    per (reading of the family, table) plus a ``total`` row per reading, ranked best first;
    ``best``: the best single reading; ``tables``: the tables the study could compare; ``readings``:
    the family's readings that differ on those tables (the stated protocol first)."""

    cells: pd.DataFrame
    fits: pd.DataFrame
    best: Protocol
    tables: tuple[str, ...]
    readings: tuple[Protocol, ...]
    explained_fraction: float

    def fit(self, protocol: Protocol) -> pd.DataFrame:
        """The per-table rows of ``protocol`` (with its total row last)."""
        return self.fits[self.fits["reading"] == protocol.label]

    def explained(self, protocol: Protocol) -> list[str]:
        rows = self.fit(protocol)
        return [t for t, ok in zip(rows["table"], rows["explained"]) if t != "total" and ok]


def run_study(inputs: StudyInputs, family: ProtocolFamily, paper: Mapping[str, Any],
              report_settings: Mapping[str, Any]) -> StudyResult:
    """Fit every reading of ``family`` to every published table the main run has samples for.

    Each table is built once per distinct reading *as that table sees it* (:meth:`Protocol.for_table`)
    and scored by the report's comparison. A reading's fit to a table: its cells, how many are within
    the report's tolerance, their median relative error, and whether it *explains* the table (at
    least ``family.explained_fraction`` of the cells within tolerance). Readings are ranked by the
    cells within tolerance over all tables, then by the median relative error of all their cells,
    then by fewer free choices: the best reading is one protocol for every table at once.
    """
    tables = tuple(t for t in TABLES if _has_samples(t, inputs) and (TABLE_SPECS[t].published_key or t) in paper)
    if not tables:
        raise ValueError("the protocol study has no table to fit: no per-sample results, or no published values")
    readings = family.readings()
    parts = []
    for table in tables:
        for seen in dict.fromkeys(r.for_table(table) for r in readings):
            scored = compare_candidate(table, candidate_table(table, seen, inputs), paper, report_settings)
            parts.append(scored.assign(table=table, reading=seen.label, **seen.as_row()))
    cells = pd.concat(parts, ignore_index=True).reindex(columns=list(CELL_COLUMNS))
    return study_from_cells(cells, family)


def study_from_cells(cells: pd.DataFrame, family: ProtocolFamily) -> StudyResult:
    """Score and rank every reading of ``family`` from its ``cells`` (:data:`CELL_COLUMNS`, e.g. read
    back from ``figures/protocol_study.csv``): what :func:`run_study` returns, without building a
    table again. The report can get the best reading's verdicts from the file this way."""
    tables = tuple(t for t in TABLES if t in set(cells["table"]))
    if not tables:
        raise ValueError("the protocol study's cells name no table of the study")
    by_key = {key: part for key, part in cells.groupby(["table", "reading"], sort=False)}
    # a dimension no table here reads cannot tell readings apart: keep each distinct reading once
    relevant = set().union(*(TABLE_DIMENSIONS[t] for t in tables))
    readings = list(dict.fromkeys(replace(STATED, **{name: getattr(r, name) for name in relevant}).canonical()
                                  for r in family.readings()))
    fit_rows = []
    for reading in readings:
        keys = [(t, reading.for_table(t).label) for t in tables]
        absent = [key for key in keys if key not in by_key]
        if absent:
            raise ValueError(f"the protocol study's cells lack reading {absent[0][1]!r} of {absent[0][0]}: "
                             "made with another family? Rerun the protocol_study rule")
        parts = [by_key[key] for key in keys]
        for table, part in zip(tables, parts):
            fit_rows.append(_fit_row(reading, table, part, family.explained_fraction))
        fit_rows.append(_fit_row(reading, "total", pd.concat(parts), family.explained_fraction))
    fits = pd.DataFrame(fit_rows, columns=list(FIT_COLUMNS))
    totals = fits[fits["table"] == "total"].assign(
        _order=lambda f: list(zip(-f["within_tolerance"], f["median_relative_error"].fillna(math.inf),
                                  f["free_choices"])))
    ranked = totals.sort_values("_order", kind="stable")["reading"].tolist()
    rank = {label: i for i, label in enumerate(ranked)}
    fits = (fits.assign(rank=fits["reading"].map(rank)).sort_values(["rank"], kind="stable")
            .reset_index(drop=True))
    best = next(r for r in readings if r.label == ranked[0])
    return StudyResult(cells=cells, fits=fits, best=best, tables=tables, readings=tuple(readings),
                       explained_fraction=family.explained_fraction)


def _has_samples(table: str, inputs: StudyInputs) -> bool:
    return bool({"table_3_1": inputs.linear_frames, "table_4_2": inputs.random_frames,
                 "table_4_3": inputs.trained_frames, "table_5_1": inputs.networks, "table_5_2": inputs.networks,
                 "table_5_3": inputs.lrn_networks}[table])


def _fit_row(reading: Protocol, table: str, cells: pd.DataFrame, explained_fraction: float) -> dict[str, Any]:
    n, within = len(cells), int(cells["within_tolerance"].sum())
    rel = cells["relative_error"].to_numpy(dtype=float)
    rel = rel[np.isfinite(rel)]
    explained = bool(n) and within >= explained_fraction * n
    if table == "total":
        explained = math.nan  # the per-table rows say which tables are explained
    return {"reading": reading.label, **reading.as_row(), "free_choices": reading.free_choices(), "table": table,
            "cells": n, "within_tolerance": within,
            "median_relative_error": float(np.median(rel)) if rel.size else math.nan, "explained": explained}


def best_per_table(result: StudyResult) -> pd.DataFrame:
    """Each table's own best reading (most cells within tolerance, then lowest median error): a
    reading tuned per table, shown to contrast with the single best reading. Its free choices add
    up over the tables."""
    rows = result.fits[result.fits["table"] != "total"]
    order = rows.assign(_w=-rows["within_tolerance"], _m=rows["median_relative_error"].fillna(math.inf))
    best = order.sort_values(["_w", "_m", "free_choices"], kind="stable").groupby("table", sort=False).head(1)
    return best.set_index("table").loc[list(result.tables)].reset_index()[
        ["table", "reading", "free_choices", "cells", "within_tolerance", "median_relative_error", "explained"]]


def best_reading_verdicts(result: StudyResult) -> pd.DataFrame:
    """Per published cell: our number and verdict under the thesis's stated protocol, and under the
    study's best single reading (named). This is what the report needs for its second verdict:
    ``item, quantity, thesis, stated_value, stated_verdict, best_reading, best_value, best_verdict``
    (``item``/``quantity`` as the report's own comparisons name them)."""
    parts = []
    for table in result.tables:
        stated = result.cells[(result.cells["table"] == table) & (result.cells["reading"] == STATED.for_table(table).label)]
        best = result.cells[(result.cells["table"] == table)
                            & (result.cells["reading"] == result.best.for_table(table).label)]
        merged = stated[["quantity", "thesis", "ours", "verdict"]].merge(
            best[["quantity", "ours", "verdict"]], on="quantity", suffixes=("_stated", "_best"), how="outer")
        parts.append(pd.DataFrame({
            "item": table, "quantity": merged["quantity"], "thesis": merged["thesis"],
            "stated_value": merged["ours_stated"], "stated_verdict": merged["verdict_stated"],
            "best_reading": result.best.label, "best_value": merged["ours_best"], "best_verdict": merged["verdict_best"],
        }))
    return pd.concat(parts, ignore_index=True)


def read_best_reading_verdicts(path: str | Path, family_settings: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`best_reading_verdicts` from a finished study's ``figures/protocol_study.csv`` and the
    config section that made it (``protocol_study``): the report's second verdict per number."""
    return best_reading_verdicts(study_from_cells(pd.read_csv(path), ProtocolFamily.from_config(family_settings)))


def monotonicity_check(frames: Sequence[pd.DataFrame], reference_eps_max: float) -> dict[str, float]:
    """The post-hoc derivation of a smaller M tested against a real search with that M: Chapter 4's
    frames hold a second search with M = ``reference_eps_max`` (``ref_*`` columns). Returns the
    samples compared, the fraction whose derived flip (main eps <= M) agrees with the real one, and
    the largest |derived eps - real eps| where both flipped (within the two searches' tolerance if
    flipping is monotone)."""
    parts = [f for f in frames if "ref_flipped" in f]
    if not parts:
        return {"samples": 0, "flip_agreement": math.nan, "max_eps_difference": math.nan}
    frame = pd.concat(parts, ignore_index=True)
    derived = rederive(frame["fgs_eps"], run_eps_max=math.inf, eps_max=reference_eps_max, halvings=None,
                       returned="upper", population="flipped")
    real = frame["ref_flipped"].astype(bool).to_numpy()
    both = derived.flipped & real
    diff = np.abs(frame["fgs_eps"].to_numpy(dtype=float) - frame["ref_eps"].to_numpy(dtype=float))[both]
    return {"samples": int(len(frame)), "flip_agreement": float((derived.flipped == real).mean()),
            "max_eps_difference": float(diff.max()) if diff.size else math.nan}


# ------------------------------------------------------------------------------------------------
# The study page
# ------------------------------------------------------------------------------------------------

TABLE_TITLES = {"table_3_1": "Table 3.1", "table_4_2": "Table 4.2", "table_4_3": "Table 4.3",
                "table_5_1": "Table 5.1", "table_5_2": "Table 5.2", "table_5_3": "Table 5.3"}


def conclusion(result: StudyResult) -> str:
    """One sentence: does one reading explain several tables, and which?"""
    explained = result.explained(result.best)
    stated = result.explained(STATED)
    names = ", ".join(TABLE_TITLES[t] for t in explained) or "none"
    if len(explained) >= 2:
        head = (f"One reading explains {len(explained)} of the {len(result.tables)} tables ({names}): "
                f"{result.best.label} ({result.best.free_choices()} free choices).")
    else:
        head = (f"No single reading of this family explains several tables: the best one ({result.best.label}, "
                f"{result.best.free_choices()} free choices) explains {names}.")
    return head + (f" The stated protocol explains {len(stated)}"
                   f" ({', '.join(TABLE_TITLES[t] for t in stated) or 'none'}).")


def _fmt(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else f"{value:.3g}"
    return str(value)


def _md_table(frame: pd.DataFrame) -> list[str]:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return lines


def study_markdown(result: StudyResult, family: ProtocolFamily, *, checks: Mapping[str, Any] | None = None,
                   top: int = 10) -> str:
    """``figures/protocol_study.md``: the family, the conclusion, the best reading and the stated
    protocol table by table, each table's own best reading, and the top readings overall."""
    lines = ["# Protocol study: which reading of the thesis's protocol reproduces each published table?", "",
             "Every reading is derived post hoc from the main run's per-sample results (same models, same samples); "
             "`advbounds.experiments.protocol` states the assumption behind each derivation: a coarser search of "
             "the same interval is exact, a smaller M assumes monotone flipping in epsilon unless the run has a "
             "real search with that M (checked below). A cell is *within tolerance* when the report would call "
             "it reproduced; a table is "
             f"*explained* when at least {family.explained_fraction:.0%} of its cells are. *Free choices*: the "
             "dimensions where a reading departs from the thesis's stated protocol.", "",
             f"**Conclusion.** {conclusion(result)}", "",
             "Tables compared: " + ", ".join(TABLE_TITLES[t] for t in result.tables) + "."
             + ("" if len(result.tables) == len(TABLES) else " Not compared (no per-sample results): "
                + ", ".join(TABLE_TITLES[t] for t in TABLES if t not in result.tables) + "."), "",
             f"The family: {len(result.readings)} readings that differ on these tables, over "
             + "; ".join(f"`{name}` in {list(getattr(family, name))}" for name in DIMENSIONS)
             + ". M varies only where the thesis does not state it (Tables 3.1, 4.2, 4.3); Chapter 5 keeps the "
               "stated 100. A reading whose M exceeds the main run's cannot be derived: its cells are missing.", ""]
    columns = ["table", "cells", "within_tolerance", "median_relative_error", "explained"]
    for title, protocol in (("Best single reading", result.best), ("The thesis's stated protocol", STATED)):
        rows = result.fit(protocol)[columns]
        lines += [f"## {title}: {protocol.label} ({protocol.free_choices()} free choices)", "", *_md_table(rows), ""]
    per_table = best_per_table(result)
    lines += ["## Each table's own best reading (tuned per table: explains nothing by itself)", "",
              f"Together these are {int(per_table['free_choices'].sum())} free choices for {len(per_table)} tables.",
              "", *_md_table(per_table), ""]
    totals = result.fits[result.fits["table"] == "total"].head(top)
    lines += [f"## The {len(totals)} best readings over all tables", "",
              *_md_table(totals[["reading", "free_choices", "cells", "within_tolerance", "median_relative_error"]]),
              ""]
    if checks:
        lines += ["## Checks of the derivation", ""]
        lines += [f"- {name}: {_fmt(value)}" for name, value in checks.items()]
        lines.append("")
    lines += ["Every cell of every reading is in `figures/protocol_study.csv`.", ""]
    return "\n".join(lines)


def derivation_checks(inputs: StudyInputs) -> dict[str, Any]:
    """The monotonicity check (:func:`monotonicity_check`) on Chapter 4's reference-M searches."""
    if inputs.reference_eps_max is None:
        return {}
    check = monotonicity_check([*inputs.random_frames, *inputs.trained_frames.values()], inputs.reference_eps_max)
    return {f"Chapter 4, main search cut at M = {inputs.reference_eps_max:g} vs the real M = "
            f"{inputs.reference_eps_max:g} search: samples": check["samples"],
            "fraction whose flip agrees": check["flip_agreement"],
            "largest |eps difference| where both flipped": check["max_eps_difference"]}


def write_study(inputs: StudyInputs, family: ProtocolFamily, paper: Mapping[str, Any],
                report_settings: Mapping[str, Any], paths: Sequence[str]) -> StudyResult:
    """Run the study and write ``figures/protocol_study.{csv,md,tex}`` (atomically): the CSV holds
    every cell of every reading, the page the conclusion, the TeX file the ranking."""
    result = run_study(inputs, family, paper, report_settings)
    for path in map(Path, paths):
        if path.suffix == ".csv":
            write_frame(result.cells, path)
        elif path.suffix == ".md":
            write_text(study_markdown(result, family, checks=derivation_checks(inputs)), path)
        elif path.suffix == ".tex":
            totals = result.fits[result.fits["table"] == "total"]
            write_table(totals[["reading", "free_choices", "cells", "within_tolerance", "median_relative_error"]],
                        [path], caption="Protocol study: readings ranked by cells within tolerance")
        else:
            raise ValueError(f"the protocol study writes .csv, .md and .tex, not {path}")
    return result

"""The metrics JSON that training writes beside every model (``results/models/<model>.metrics.json``).

:class:`ModelMetrics` is its one reader and writer: :func:`advbounds.training.train_classifier`
returns one, the chapter code adds what it knows about the model and its data
(:meth:`ModelMetrics.with_details`), the training jobs write it (:meth:`ModelMetrics.to_json`) and
the tables and the report read it back (:meth:`ModelMetrics.from_json`). Torch-free, so that the
report can read it without torch.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from advbounds.io import write_json


@dataclass(frozen=True)
class ModelMetrics:
    """What one training run measured, and what the chapter adds about the model.

    - ``train_accuracy``, ``val_accuracy``, ``test_accuracy``: ``None`` for an absent or empty split;
    - ``final_loss``: mean of the last <= 100 iteration losses; ``loss_curve``: ``[iteration, mean
      loss]`` per 100 iterations;
    - ``iterations``, ``epochs`` (iterations per pass over the training set), ``resumed_from`` (the
      checkpoint's iteration, 0 for a fresh run), ``wall_time_s`` (this call), ``device``, ``seed``,
      ``n_train``, ``settings`` (the ``TrainingSettings`` as a plain mapping);
    - ``details``: what the chapter adds, in the order it adds it (Chapter 4: ``n_val``, ``n_test``,
      ``dataset``; Chapter 5: ``builder``, ``n_parameters``, ``model``, ``network``, ``dataset``,
      ``input_shape``, ``classes``, ``n_test``, ``data_meta``). In the JSON they sit beside the
      measured keys.
    """

    train_accuracy: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    final_loss: float | None
    loss_curve: list[list[float]]
    iterations: int
    epochs: float
    resumed_from: int
    wall_time_s: float
    device: str
    seed: int
    n_train: int
    settings: Mapping[str, Any]
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def measured_keys(cls) -> tuple[str, ...]:
        """The keys training itself writes (every field but ``details``)."""
        return tuple(f.name for f in fields(cls) if f.name != "details")

    def with_details(self, **details: Any) -> ModelMetrics:
        """A copy with ``details`` added (a measured key cannot be overwritten this way)."""
        clash = sorted(set(details) & set(self.measured_keys()))
        if clash:
            raise ValueError(f"{clash} are measured by training, not details")
        return dataclasses.replace(self, details={**self.details, **details})

    def to_dict(self) -> dict[str, Any]:
        """The JSON's contents: the measured keys, then the details."""
        return {**{name: getattr(self, name) for name in self.measured_keys()}, **self.details}

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the metrics JSON atomically."""
        write_json(self.to_dict(), path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "metrics") -> ModelMetrics:
        """The metrics of a mapping :meth:`to_dict` wrote; a missing measured key is an error."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source} is not a metrics mapping")
        missing = [name for name in cls.measured_keys() if name not in data]
        if missing:
            raise ValueError(f"{source} lacks the training metrics {missing}; retrain the model")
        measured = {name: data[name] for name in cls.measured_keys()}
        return cls(**measured, details={k: v for k, v in data.items() if k not in measured})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ModelMetrics:
        """Read a metrics JSON written by :meth:`to_json`."""
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle), source=str(path))


__all__ = ["ModelMetrics"]

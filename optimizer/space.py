"""The mixed search space as the models see it: every tunable parameter on one axis.

Doubles map linearly to [0, 1], log-doubles map their logarithm to [0, 1], ints map to [0, 1]
with each integer owning an equal-width cell (decoding rounds, so integrality and bounds hold
by construction), categoricals are the index of their value. Working in the unit cube lets
hyperopt's uniform prior (mu 0.5, sigma 1) serve every continuous axis alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optimizer.spec import ExperimentSpec, Parameter


class SearchSpace:
    """Encode assignments to rows of floats and decode rows back, for one experiment."""

    def __init__(self, spec: ExperimentSpec):
        self.fixed = {p.name: p.coerce(p.default_value) for p in spec.parameters
                      if not p.tunable and p.default_value is not None}
        self.parameters = tuple(p for p in spec.parameters if p.name not in self.fixed)
        self.continuous = np.array([p.type != "categorical" for p in self.parameters], dtype=bool)
        self.n_choices = [len(p.categorical_values or ()) for p in self.parameters]
        self.defaults = {p.name: p.default_value for p in self.parameters if p.default_value is not None}

    @property
    def n_dims(self) -> int:
        return len(self.parameters)

    def encode(self, assignments: dict[str, Any]) -> np.ndarray:
        return np.array([_encode(p, assignments[p.name]) for p in self.parameters], dtype=float)

    def encode_many(self, assignments: list[dict[str, Any]]) -> np.ndarray:
        """Rows for many (validated) assignments, a column at a time."""
        rows = np.empty((len(assignments), self.n_dims))
        for d, p in enumerate(self.parameters):
            column = [a[p.name] for a in assignments]
            if p.type == "categorical":
                index = {value: float(i) for i, value in enumerate(p.categorical_values or ())}
                rows[:, d] = [index[value] for value in column]
            else:
                rows[:, d] = _encode_numbers(p, np.array(column, dtype=float))
        return rows

    def decode(self, row: np.ndarray) -> dict[str, Any]:
        decoded = {p.name: _decode(p, float(u)) for p, u in zip(self.parameters, row)}
        return decoded | self.fixed

    def snap(self, rows: np.ndarray) -> np.ndarray:
        """Move rows onto values an assignment can take (integer cells' centres, categories)."""
        snapped = np.clip(rows, 0.0, 1.0)
        for d, p in enumerate(self.parameters):
            if p.type == "int":
                cells = _int_cells(p)
                snapped[:, d] = (np.minimum(np.floor(snapped[:, d] * cells), cells - 1) + 0.5) / cells
            elif p.type == "categorical":
                snapped[:, d] = np.clip(np.round(rows[:, d]), 0, self.n_choices[d] - 1)
        return snapped

    def sample_uniform(self, rng: np.random.Generator, size: int) -> np.ndarray:
        rows = rng.uniform(0.0, 1.0, size=(size, self.n_dims))
        for d, choices in enumerate(self.n_choices):
            if choices:
                rows[:, d] = rng.integers(choices, size=size)
        return self.snap(rows)

    def distances(self, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Pairwise distances: Euclidean on continuous axes plus 1 per differing category."""
        if len(others) == 0:
            return np.full((len(rows), 0), np.inf)
        diff = rows[:, None, :] - others[None, :, :]
        continuous = np.sum(diff[:, :, self.continuous] ** 2, axis=2)
        categorical = np.sum(diff[:, :, ~self.continuous] != 0, axis=2)
        return np.sqrt(continuous + categorical)


def _int_cells(parameter: Parameter) -> int:
    assert parameter.bounds is not None
    return int(parameter.bounds.max) - int(parameter.bounds.min) + 1


def _encode(parameter: Parameter, value: Any) -> float:
    if parameter.type == "categorical":
        return float((parameter.categorical_values or ()).index(value))
    return float(_encode_numbers(parameter, np.array([value], dtype=float))[0])


def _encode_numbers(parameter: Parameter, values: np.ndarray) -> np.ndarray:
    assert parameter.bounds is not None
    low, high = parameter.bounds.min, parameter.bounds.max
    if parameter.type == "int":
        return (values - low + 0.5) / _int_cells(parameter)
    if parameter.is_log:
        return (np.log(values) - math.log(low)) / (math.log(high) - math.log(low))
    return (values - low) / (high - low)


def _decode(parameter: Parameter, unit: float) -> float | int | str:
    if parameter.type == "categorical":
        values = parameter.categorical_values or ()
        return str(values[int(min(max(round(unit), 0), len(values) - 1))])
    assert parameter.bounds is not None
    low, high = parameter.bounds.min, parameter.bounds.max
    unit = min(max(unit, 0.0), 1.0)
    if parameter.type == "int":
        cells = _int_cells(parameter)
        return int(low) + min(int(math.floor(unit * cells)), cells - 1)
    if parameter.is_log:
        value = math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
    else:
        value = low + unit * (high - low)
    return float(min(max(value, low), high))

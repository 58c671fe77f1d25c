"""The one seam between the platform and the search algorithm (contract: DESIGN.md)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optimizer.observation import Observation, validate_assignments, validate_history
from optimizer.spec import ExperimentSpec, Parameter


def suggest(
    spec: ExperimentSpec,
    history: list[Observation],
    pending: list[dict[str, Any]],
    n: int = 1,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """Return `n` new assignments. Pure: same inputs and seed, same output."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    validate_history(spec, history)
    for assignments in pending:
        validate_assignments(spec, assignments)
    rng = np.random.default_rng(seed)
    return [{p.name: _draw(p, rng) for p in spec.parameters} for _ in range(n)]


def _draw(parameter: Parameter, rng: np.random.Generator) -> float | int | str:
    if parameter.type == "categorical":
        values = parameter.categorical_values or ()
        return str(values[int(rng.integers(len(values)))])
    assert parameter.bounds is not None
    low, high = parameter.bounds.min, parameter.bounds.max
    if parameter.type == "int":
        return int(rng.integers(int(low), int(high) + 1))
    if parameter.is_log:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))

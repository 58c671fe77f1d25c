"""Observations as the optimizer sees them, and the checks that keep bad data out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, model_validator

from optimizer.spec import ExperimentSpec

Assignments = dict[str, float | int | str]


class Observation(BaseModel):
    """One finished trial: its assignments and either its metric values or `failed=True`."""

    model_config = ConfigDict(frozen=True)

    assignments: dict[str, Any]
    values: dict[str, float] | None = None
    failed: bool = False
    failure_reason: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _values_xor_failed(self) -> Observation:
        if self.failed and self.values:
            raise ValueError("a failed observation carries no values")
        if not self.failed and self.values is None:
            raise ValueError("a completed observation needs `values` (or pass failed=True)")
        return self


class ObservationError(ValueError):
    """Assignments or values that do not fit the experiment; nothing was recorded."""


def validate_assignments(spec: ExperimentSpec, assignments: dict[str, Any]) -> Assignments:
    """Return `assignments` coerced to each parameter's type; raise naming every bad entry."""
    if not isinstance(assignments, dict):
        raise ObservationError(f"assignments must be a mapping of parameter name to value, got {type(assignments).__name__}")
    problems = []
    names = {p.name for p in spec.parameters}
    for name in sorted(set(assignments) - names):
        problems.append(f"assignments.{name}: the experiment has no such parameter (known: {', '.join(sorted(names))})")
    coerced: Assignments = {}
    for parameter in spec.parameters:
        if parameter.name not in assignments:
            problems.append(f"assignments.{parameter.name}: missing")
            continue
        try:
            coerced[parameter.name] = parameter.coerce(assignments[parameter.name])
        except ValueError as error:
            problems.append(f"assignments.{parameter.name}: {error}")
    if problems:
        raise ObservationError("; ".join(problems))
    return coerced


def validate_values(spec: ExperimentSpec, values: dict[str, Any]) -> dict[str, float]:
    """Return the metric values as floats; refuse unknown, missing required or non-finite ones."""
    if not isinstance(values, dict) or not values:
        raise ObservationError("values must be a non-empty mapping of metric name to number")
    problems = []
    known = {m.name for m in spec.metrics}
    for name in sorted(set(values) - known):
        problems.append(f"values.{name}: the experiment has no such metric (known: {', '.join(sorted(known))})")
    for metric in spec.required_metrics:
        if metric.name not in values:
            problems.append(f"values.{metric.name}: missing; every {metric.strategy} metric must be reported "
                            "(report failed=True if the trial produced no metrics)")
    clean: dict[str, float] = {}
    for name, value in values.items():
        if name not in known:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"values.{name}: {value!r} is not a number")
            continue
        if not math.isfinite(float(value)):
            problems.append(f"values.{name}: {value!r} is not finite; report the trial as failed instead")
            continue
        clean[name] = float(value)
    if problems:
        raise ObservationError("; ".join(problems))
    return clean


def validate_history(spec: ExperimentSpec, history: list[Observation]) -> None:
    """Raise ObservationError for history that does not match `spec` (the optimizer's input).

    History that conforms (the usual case, checked a column at a time) costs little; any
    doubt goes through the per-observation checks, which name the offending entry.
    """
    if _conforms(spec, history):
        return
    for index, observation in enumerate(history):
        try:
            validate_assignments(spec, observation.assignments)
            if not observation.failed:
                validate_values(spec, observation.values or {})
        except ObservationError as error:
            raise ObservationError(f"history[{index}]: {error}") from None


def _conforms(spec: ExperimentSpec, history: list[Observation]) -> bool:
    """True when every observation surely passes `validate_assignments` and `validate_values`
    (a fast, column-wise sufficient check; False only means "check one by one")."""
    names = {p.name for p in spec.parameters}
    known = {m.name for m in spec.metrics}
    required = {m.name for m in spec.required_metrics}
    assignments = [o.assignments for o in history]
    completed = [o.values for o in history if not o.failed]
    if not all(a.keys() == names for a in assignments):
        return False
    if not all(values is not None and required <= values.keys() <= known for values in completed):
        return False
    for parameter in spec.parameters:
        column = [a[parameter.name] for a in assignments]
        if parameter.type == "categorical":
            if not set(map(type, column)) <= {str} or not set(column) <= set(parameter.categorical_values or ()):
                return False
            continue
        if not set(map(type, column)) <= {int, float}:
            return False
        numbers = np.array(column, dtype=float)
        assert parameter.bounds is not None
        if not np.all((numbers >= parameter.bounds.min) & (numbers <= parameter.bounds.max)):
            return False  # NaN fails this too
        if parameter.type == "int" and not np.all(numbers == np.round(numbers)):
            return False
    values = [value for row in completed for value in row.values()]  # type: ignore[union-attr]
    return set(map(type, values)) <= {int, float} and bool(np.all(np.isfinite(np.array(values, dtype=float))))

"""Observations as the optimizer sees them, and the checks that keep bad data out."""

from __future__ import annotations

import math
import numbers
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


class MetricValueError(ObservationError):
    """One metric value that is not a finite number.

    `not_finite` tells the two cases apart: a NaN or infinity is a diverged trial
    (a failed observation, when an objective returned it), anything else a bug in the caller.
    """

    def __init__(self, message: str, *, not_finite: bool):
        super().__init__(message)
        self.not_finite = not_finite


def metric_number(name: str, value: Any) -> float:
    """The one metric cleaner: `value` as a float, or MetricValueError naming the metric.

    Numbers of every kind training code returns are accepted: Python ints and floats, numpy
    scalars (`np.float32`, `np.int64`) and zero-dimensional arrays or torch tensors. Booleans,
    strings, containers and non-finite values are refused.
    """
    number = value
    if not isinstance(number, numbers.Real) and getattr(number, "ndim", None) == 0 and hasattr(number, "item"):
        number = number.item()  # a 0-d numpy array or torch tensor
    if isinstance(number, (bool, np.bool_)) or not isinstance(number, numbers.Real):
        shape = getattr(value, "shape", None)
        hint = f" (an array of shape {tuple(shape)}; reduce it to one number)" if shape else ""
        raise MetricValueError(f"{name}: {value!r} is not a number{hint}", not_finite=False)
    number = float(number)
    if not math.isfinite(number):
        raise MetricValueError(f"{name}: {value!r} is not finite", not_finite=True)
    return number


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
        try:
            clean[name] = metric_number(name, value)
        except MetricValueError as error:
            advice = "; report the trial as failed instead" if error.not_finite else ""
            problems.append(f"values.{error}{advice}")
    if problems:
        raise ObservationError("; ".join(problems))
    return clean


def validate_history(spec: ExperimentSpec, history: list[Observation]) -> None:
    """Raise ObservationError for history that does not match `spec` (the optimizer's input)."""
    for index, observation in enumerate(history):
        try:
            validate_assignments(spec, observation.assignments)
            if not observation.failed:
                validate_values(spec, observation.values or {})
        except ObservationError as error:
            raise ObservationError(f"history[{index}]: {error}") from None

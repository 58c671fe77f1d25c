"""Observations as the optimizer sees them, and the checks that keep bad data out."""

from __future__ import annotations

import math
import numbers
from itertools import chain, compress
from operator import attrgetter, itemgetter, not_
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paretune.optimizer.spec import ExperimentSpec, Parameter

Assignments = dict[str, float | int | str]


class Observation(BaseModel):
    """One finished trial: its assignments and either its metric values or `failed=True`.

    `value_stddevs` are the standard deviations the user measured for some of the values
    (SigOpt's `value_stddev`); `task` is the multitask fidelity it ran at (None: the full task,
    or an experiment without tasks). `fidelity` is the fraction of its training a trial
    reached before it was stopped early (1: it ran to the end); a stopped trial's `values` are
    its last checkpoint's, which the optimizer reads as a cheaper observation (cost = task cost
    x fidelity), never as a full result.
    """

    model_config = ConfigDict(frozen=True)

    assignments: dict[str, Any]
    values: dict[str, float] | None = None
    failed: bool = False
    failure_reason: str | None = Field(default=None, exclude=True)
    value_stddevs: dict[str, float] | None = None
    task: str | None = None
    fidelity: float = 1.0

    @field_validator("fidelity", mode="before")
    @classmethod
    def _fidelity_fraction(cls, value: Any) -> float:
        number = metric_number("fidelity", value)  # numpy and torch scalars are numbers; bools, NaN are not
        if not 0.0 < number <= 1.0:
            raise ValueError(f"fidelity: {value!r} is not in (0, 1]; give the fraction of training the trial "
                             "reached before it stopped (1.0 for a trial that ran to the end)")
        return number

    @model_validator(mode="after")
    def _values_xor_failed(self) -> Observation:
        if self.failed and self.fidelity != 1.0:
            raise ValueError("fidelity: a failed observation has no fidelity; give fidelity only with the values "
                             "of a trial stopped early")
        if self.failed and self.values:
            raise ValueError("a failed observation carries no values")
        if not self.failed and self.values is None:
            raise ValueError("a completed observation needs `values` (or pass failed=True)")
        if self.value_stddevs and self.failed:
            raise ValueError("a failed observation carries no value_stddevs")
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
    """Return `assignments` coerced to each parameter's type; raise naming every bad entry.

    With conditionals, each conditional's value sits under its name, and a parameter whose
    conditions do not hold must be absent (SigOpt's shape).
    """
    if not isinstance(assignments, dict):
        raise ObservationError(f"assignments must be a mapping of parameter name to value, got {type(assignments).__name__}")
    problems = []
    conditionals = {c.name: c for c in spec.conditionals or ()}
    names = {p.name for p in spec.parameters} | set(conditionals)
    for name in sorted(set(assignments) - names):
        problems.append(f"assignments.{name}: the experiment has no such parameter (known: {', '.join(sorted(names))})")
    coerced: Assignments = {}
    for name, conditional in conditionals.items():
        if name not in assignments:
            problems.append(f"assignments.{name}: missing; give the conditional's value ({', '.join(conditional.values)})")
        elif assignments[name] not in conditional.values:
            problems.append(f"assignments.{name}: {assignments[name]!r} is not a value of conditional {name!r} "
                            f"({', '.join(conditional.values)})")
        else:
            coerced[name] = str(assignments[name])
    if problems:
        raise ObservationError("; ".join(problems))
    for parameter in spec.parameters:
        if not parameter.active(coerced):
            if parameter.name in assignments:
                problems.append(f"assignments.{parameter.name}: inactive here (its conditions "
                                f"{dict(parameter.conditions or {})} do not hold); omit it")
            continue
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


def validate_value_stddevs(spec: ExperimentSpec, stddevs: dict[str, Any] | None,
                           values: dict[str, Any]) -> dict[str, float] | None:
    """Return the standard deviations as floats; each must belong to a reported value and be
    finite and non-negative."""
    if stddevs is None:
        return None
    if not isinstance(stddevs, dict):
        raise ObservationError("value_stddevs must be a mapping of metric name to a standard deviation")
    problems = []
    clean: dict[str, float] = {}
    for name, stddev in stddevs.items():
        if name not in values:
            problems.append(f"value_stddevs.{name}: no value reported for it")
            continue
        try:
            number = metric_number(name, stddev)
        except MetricValueError as error:
            problems.append(f"value_stddevs.{error}")
            continue
        if number < 0:
            problems.append(f"value_stddevs.{name}: {stddev!r} is negative; a standard deviation is >= 0")
        else:
            clean[name] = number
    if problems:
        raise ObservationError("; ".join(problems))
    return clean


def validate_task(spec: ExperimentSpec, task: str | None) -> str | None:
    """The task an observation or suggestion ran at: required, and known, when the experiment
    has tasks; absent otherwise."""
    known = [t.name for t in spec.tasks or ()]
    if not known:
        if task is not None:
            raise ObservationError(f"task: the experiment has no tasks, got {task!r}")
        return None
    if task not in known:
        shown = "missing" if task is None else f"{task!r} is not a task of the experiment"
        raise ObservationError(f"task: {shown} (tasks: {', '.join(known)})")
    return task


def validate_history(spec: ExperimentSpec, history: list[Observation]) -> dict[str, list[Any] | np.ndarray] | None:
    """Raise ObservationError for history that does not match `spec` (the optimizer's input).

    History that conforms (the usual case, checked a column at a time) costs little, and its
    assignments come back as columns (parameter name -> values, in history order; numbers as
    a float array) for the encoder to reuse; any doubt goes through the per-observation checks, which name the
    offending entry (and None comes back).
    """
    columns = _conforms(spec, history)
    if columns is not None:
        return columns
    for index, observation in enumerate(history):
        try:
            validate_assignments(spec, observation.assignments)
            validate_task(spec, observation.task)
            if not observation.failed:
                validate_values(spec, observation.values or {})
                validate_value_stddevs(spec, observation.value_stddevs, observation.values or {})
        except ObservationError as error:
            raise ObservationError(f"history[{index}]: {error}") from None
    return None


def _conforms(spec: ExperimentSpec, history: list[Observation]) -> dict[str, list[Any] | np.ndarray] | None:
    """The assignments' columns when every observation surely passes `validate_assignments`
    and `validate_values` (a fast, column-wise sufficient check of the plain case: no
    conditionals, grids, tasks or reported standard deviations; None only means "check one
    by one").

    Each pass over the observations maps a getter and keeps no new container per observation:
    at 10^5 observations, per-observation tuples set off full garbage collections over the
    whole history, which cost more than the checks themselves.
    """
    if spec.conditionals or spec.tasks or any(p.grid is not None for p in spec.parameters):
        return None
    if any(map(attrgetter("value_stddevs"), history)) or set(map(attrgetter("task"), history)) - {None}:
        return None
    assignments = list(map(attrgetter("assignments"), history))
    completed = list(compress(map(attrgetter("values"), history), map(not_, map(attrgetter("failed"), history))))
    required = [m.name for m in spec.required_metrics]
    if set(map(len, assignments)) - {len(spec.parameters)} or None in completed:
        return None
    with_others = [row for row in completed if len(row) != len(required)] if set(map(len, completed)) - {
        len(required)} else []  # rows with store metrics too (a Python loop only where there are some)
    if not all(set(row) <= {m.name for m in spec.metrics} for row in with_others):
        return None
    try:  # with the lengths above, every assignment has exactly the parameters, every completed one the metrics
        columns = {p.name: list(map(itemgetter(p.name), assignments)) for p in spec.parameters}
        values = list(chain.from_iterable(map(itemgetter(name), completed) for name in required))
    except KeyError:
        return None
    values += [value for row in with_others for name, value in row.items() if name not in required]
    for parameter in spec.parameters:
        conforming = _conforming_column(parameter, columns[parameter.name])
        if conforming is None:
            return None
        columns[parameter.name] = conforming
    if set(map(type, values)) <= {int, float} and np.all(np.isfinite(np.array(values, dtype=float))):
        return columns
    return None


def _conforming_column(parameter: Parameter, column: list[Any]) -> list[Any] | np.ndarray | None:
    """One parameter's values (no grid) when each has its type and lies in its bounds or
    categories: numbers as the float array they were checked as (the encoder reuses it)."""
    if parameter.type == "categorical":
        conforms = set(map(type, column)) <= {str} and set(column) <= set(parameter.categorical_values or ())
        return column if conforms else None
    if not set(map(type, column)) <= {int, float}:
        return None
    numbers = np.array(column, dtype=float)
    assert parameter.bounds is not None
    if not np.all((numbers >= parameter.bounds.min) & (numbers <= parameter.bounds.max)):
        return None  # NaN fails this too
    return numbers if parameter.type != "int" or np.all(numbers == np.round(numbers)) else None

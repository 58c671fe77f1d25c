"""The report model's data: what one reading of an experiment holds, and how its numbers print.

`storage/report.py` reads an experiment into these dataclasses once; every front (CLI, Prefect
artifacts, dashboard, static report, demos) renders them and computes nothing of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

import numpy as np

from paretune.optimizer import ExperimentSpec
from paretune.optimizer.spec import Metric
from paretune.storage.history import History
from paretune.storage.records import ExperimentRecord

Status = Literal["feasible", "infeasible", "failed", "stopped"]  # stopped: early, at its last checkpoint's values
STATUSES: tuple[Status, ...] = ("feasible", "infeasible", "failed", "stopped")
SIGNIFICANT_DIGITS = 4


def format_number(value: Any, digits: int = SIGNIFICANT_DIGITS) -> str:
    """A number as a person reads it: `digits` significant digits, no float noise.

    Whole numbers print whole with thousands separators (``22,713,216``), others with
    `digits` significant digits in fixed point, grouped the same way (``0.3935``, ``71.23``,
    ``1,991``), or in scientific notation below 1e-3 and from 1e6 on (``1.235e-5``). None
    prints as an empty string.
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    magnitude = abs(number)
    if magnitude < 1e-3 or magnitude >= 1e6:
        mantissa, exponent = f"{number:.{digits - 1}e}".split("e")
        return f"{_trim(mantissa)}e{int(exponent)}"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    return _trim(f"{number:,.{decimals}f}")


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def margin(metric: Metric, value: Any) -> Any:
    """How far `value` (a number or a numpy array) clears (> 0) or misses (< 0) the metric's
    threshold, in the metric's units."""
    assert metric.threshold is not None
    return value - metric.threshold if metric.objective == "maximize" else metric.threshold - value


def threshold_rule(metric: Metric) -> str:
    """``exact >= 50``: the rule a value must meet."""
    return f"{metric.name} {'>=' if metric.objective == 'maximize' else '<='} {format_number(metric.threshold)}"


def failure_kind(reason: str) -> str:
    """Reasons read 'kind: detail' (out_of_memory, timeout, diverged, worker lost...)."""
    return reason.split(":", 1)[0].strip() or reason


# -- the model ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One observation: its status, assignments, metric values and threshold margins."""

    observation_id: int
    suggestion_id: int
    trial: int  # its number within the experiment (`trial_numbers`): the number people read
    run_id: int | None
    status: Status
    assignments: dict[str, Any]
    values: dict[str, float]
    margins: dict[str, float]
    failure_reason: str | None
    duration_s: float | None
    on_frontier: bool
    number: int  # 1-based position in the experiment's observations (the history's x axis)


@dataclass(frozen=True)
class PointColumns:
    """Every observation as columns, in observation order (index i is observation number i + 1).

    Fronts that draw thousands of points read these; `point(i)` is one row as a `Point`.
    """

    observation_id: list[int]
    suggestion_id: list[int]
    trial: list[int]
    run_id: list[int | None]
    status: list[Status]
    on_frontier: list[bool]
    full_cost: list[bool]  # a cheaper task's observation informs the search, not the frontier or "best"
    failure_reason: list[str | None]
    duration_s: list[float | None]
    assignments: dict[str, list[Any]]
    values: dict[str, list[float | None]]
    margins: dict[str, list[float | None]]

    def __len__(self) -> int:
        return len(self.observation_id)

    def point(self, i: int) -> Point:
        return Point(
            observation_id=self.observation_id[i], suggestion_id=self.suggestion_id[i], trial=self.trial[i],
            run_id=self.run_id[i],
            status=self.status[i],
            assignments={name: column[i] for name, column in self.assignments.items() if column[i] is not None},
            values={name: column[i] for name, column in self.values.items() if column[i] is not None},
            margins={name: column[i] for name, column in self.margins.items() if column[i] is not None},
            failure_reason=self.failure_reason[i], duration_s=self.duration_s[i], on_frontier=self.on_frontier[i],
            number=i + 1,
        )

    def array(self, metric: str) -> np.ndarray:
        """A metric's values as floats (NaN where an observation has none)."""
        return np.array(self.values[metric], dtype=float)


@dataclass(frozen=True)
class BestValue:
    """The best value of one metric among feasible observations, and where it was observed."""

    metric: str
    objective: str
    strategy: str
    value: float
    observation_id: int
    suggestion_id: int
    trial: int
    run_id: int | None
    assignments: dict[str, Any]


@dataclass(frozen=True)
class Summary:
    """Where an experiment stands: budget, counts, failures, best values, last activity."""

    experiment_id: int
    name: str
    state: str
    created_at: datetime
    budget: int | None
    observations: int
    completed: int
    failed: int
    feasible: int
    open_suggestions: int
    failures_by_reason: dict[str, int]
    failures_by_kind: dict[str, int]
    best: tuple[BestValue, ...]
    last_activity: datetime | None
    spent: float = 0.0  # of the budget, in cost units (SigOpt's multitask); `observations` without tasks
    in_cost_units: bool = False
    stopped: int = 0  # stopped early (neither completed nor failed)
    full_trials_saved: float = 0.0  # what stopping them early saved, in full trials' worth of training

    @property
    def infeasible(self) -> int:
        return self.completed - self.feasible

    @property
    def remaining(self) -> float | None:
        return None if self.budget is None else max(self.budget - self.spent, 0)

    @property
    def budget_used(self) -> str:
        """``40 of 60 observations`` (the budget in force, overrides included), or the cost units
        spent with tasks: ``12.5 of 30 cost units (52 observations)``."""
        budget = "no budget" if self.budget is None else format_number(self.budget)
        if self.in_cost_units:
            return (f"{format_number(self.spent)} of {budget} cost units "
                    f"({format_number(self.observations)} observations)")
        return f"{format_number(self.observations)} of {budget} observations"

    @property
    def running(self) -> bool:
        return self.open_suggestions > 0


@dataclass(frozen=True)
class ThresholdCheck:
    metric: str
    objective: str
    strategy: str
    threshold: float
    value: float | None
    margin: float | None
    meets: bool


@dataclass(frozen=True)
class ThresholdRow:
    """One observation against every thresholded metric."""

    point: Point
    checks: tuple[ThresholdCheck, ...]

    @property
    def meets_all(self) -> bool:
        return self.point.status == "feasible"

    @property
    def violated(self) -> tuple[str, ...]:
        return tuple(c.metric for c in self.checks if not c.meets)


@dataclass(frozen=True)
class ThresholdSummary:
    """One thresholded metric over the completed observations."""

    metric: Metric
    met: int
    violated: int
    best_value: float | None
    best_margin: float | None
    median_margin: float | None

    @property
    def rule(self) -> str:
        return threshold_rule(self.metric)


@dataclass(frozen=True)
class Version:
    """What changes when an experiment does: a cheap poll tells a page to refresh."""

    observations: int
    last_observation_id: int | None
    open_suggestions: int
    state: str

    def token(self) -> str:
        return f"{self.observations}-{self.last_observation_id}-{self.open_suggestions}-{self.state}"


@dataclass(frozen=True)
class ExperimentReport:
    experiment: ExperimentRecord
    summary: Summary
    columns: PointColumns
    frontier: tuple[Point, ...]
    history: History
    version: Version
    thresholds: tuple[ThresholdSummary, ...]
    staircase: tuple[tuple[float, float], ...]  # see `staircase`

    @cached_property
    def points(self) -> tuple[Point, ...]:
        """Every observation as a `Point`, in order."""
        return tuple(self.columns.point(i) for i in range(len(self.columns)))

    @property
    def spec(self) -> ExperimentSpec:
        return self.experiment.spec

    @property
    def optimized_metrics(self) -> tuple[Metric, ...]:
        return self.spec.optimized_metrics

    @property
    def thresholded_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.spec.metrics if m.threshold is not None)

    @property
    def shown_metrics(self) -> tuple[Metric, ...]:
        return ordered_metrics(self.spec)

    def threshold_rows(self, limit: int | None = None) -> list[ThresholdRow]:
        """Each observation (the latest `limit` when given) against every thresholded metric."""
        metrics = self.thresholded_metrics
        first = 0 if limit is None else max(len(self.columns) - limit, 0)
        rows = []
        for point in (self.columns.point(i) for i in range(first, len(self.columns))):
            checks = tuple(
                ThresholdCheck(m.name, m.objective, m.strategy, float(m.threshold), point.values.get(m.name),
                               point.margins.get(m.name),
                               point.status != "failed" and m.name in point.values and m.meets(point.values[m.name]))
                for m in metrics if m.threshold is not None
            )
            rows.append(ThresholdRow(point, checks))
        return rows


def ordered_metrics(spec: ExperimentSpec) -> tuple[Metric, ...]:
    """Optimized, then constraint, then stored metrics: the order every table uses."""
    order = {"optimize": 0, "constraint": 1, "store": 2}
    return tuple(sorted(spec.metrics, key=lambda m: order[m.strategy]))

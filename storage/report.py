"""The report model: one reading of an experiment that every front shows.

The dashboard, the static HTML report, the CLI's `frontier` and the Prefect artifacts all
render these dataclasses, so they show the same numbers: a point's status comes from the
`feasible_scores` view, frontier membership from the `pareto_frontier` view (whose columns are
decoded here and nowhere else), budgets and failures from `Storage.progress`. Everything is
read through the storage interface (`Storage.query` on the documented tables and views), in a
few set-based queries, so a report of 10^5 observations stays well under a second.

    report = experiment_report(storage, "bert-squad2-distillation")
    report.summary.best            # best value per optimized/constraint metric (feasible only)
    report.frontier                # Pareto-optimal points, by the first optimized metric
    report.threshold_summaries()   # per thresholded metric: met, violated, best margin
    format_number(0.3935102667)    # '0.3935'
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optimizer import ExperimentSpec
from optimizer.pareto import hypervolume_improvements
from optimizer.spec import Metric, Parameter
from storage.base import Storage, StorageError
from storage.duckdb_store import DuckDBStorage
from storage.records import ExperimentRecord

Status = Literal["feasible", "infeasible", "failed"]
STATUSES: tuple[Status, ...] = ("feasible", "infeasible", "failed")
SIGNIFICANT_DIGITS = 4
# With no threshold on an optimized metric, the hypervolume's reference point lies this
# fraction of the observed range beyond the worst feasible value (so extreme points count).
REFERENCE_MARGIN = 0.1


def format_number(value: Any, digits: int = SIGNIFICANT_DIGITS) -> str:
    """A number as a person reads it: `digits` significant digits, no float noise.

    Whole numbers print whole with thousands separators (``22,713,216``), others with
    `digits` significant digits in fixed point (``0.3935``, ``71.23``), or in scientific
    notation below 1e-3 and from 1e6 on (``1.235e-5``). None prints as an empty string.
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
    return _trim(f"{number:.{decimals}f}")


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def margin(metric: Metric, value: float | None) -> float | None:
    """How far `value` clears (> 0) or misses (< 0) the metric's threshold, in the metric's units."""
    if metric.threshold is None or value is None:
        return None
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
    run_id: int | None
    status: Status
    assignments: dict[str, Any]
    values: dict[str, float]
    margins: dict[str, float]
    failure_reason: str | None
    duration_s: float | None
    created_at: datetime
    on_frontier: bool
    number: int  # 1-based position in the experiment's observations (the history's x axis)


@dataclass(frozen=True)
class BestValue:
    """The best value of one metric among feasible observations, and where it was observed."""

    metric: str
    objective: str
    strategy: str
    value: float
    observation_id: int
    suggestion_id: int
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

    @property
    def infeasible(self) -> int:
        return self.completed - self.feasible

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.observations, 0)

    @property
    def budget_used(self) -> str:
        """``40 of 60 observations`` (the budget in force, overrides included)."""
        budget = "no budget" if self.budget is None else format_number(self.budget)
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
class HistoryStep:
    observations: int
    value: float


@dataclass(frozen=True)
class History:
    """Hypervolume (two optimized metrics) or best value (one) after each observation.

    Only the steps where it changes are kept; it holds from `observations` until the next step.
    """

    kind: Literal["hypervolume", "best value"]
    metrics: tuple[str, ...]
    steps: tuple[HistoryStep, ...]
    total_observations: int
    reference: dict[str, float] = field(default_factory=dict)
    reference_source: dict[str, str] = field(default_factory=dict)

    @property
    def current(self) -> float | None:
        return self.steps[-1].value if self.steps else None


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
    points: tuple[Point, ...]
    frontier: tuple[Point, ...]
    history: History
    version: Version

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
        """Optimized, then constraint, then stored metrics: the order every table uses."""
        order = {"optimize": 0, "constraint": 1, "store": 2}
        return tuple(sorted(self.spec.metrics, key=lambda m: order[m.strategy]))

    def threshold_rows(self, limit: int | None = None) -> list[ThresholdRow]:
        """Each observation (the latest `limit` when given) against every thresholded metric."""
        metrics = self.thresholded_metrics
        points = self.points if limit is None else self.points[-limit:]
        rows = []
        for point in points:
            checks = tuple(
                ThresholdCheck(m.name, m.objective, m.strategy, float(m.threshold), point.values.get(m.name),
                               point.margins.get(m.name),
                               point.status != "failed" and m.name in point.values and m.meets(point.values[m.name]))
                for m in metrics if m.threshold is not None
            )
            rows.append(ThresholdRow(point, checks))
        return rows

    def threshold_summaries(self) -> list[ThresholdSummary]:
        completed = [p for p in self.points if p.status != "failed"]
        summaries = []
        for metric in self.thresholded_metrics:
            margins = np.array([p.margins[metric.name] for p in completed if metric.name in p.margins])
            values = [p.values[metric.name] for p in completed if metric.name in p.values]
            best = (max if metric.objective == "maximize" else min)(values) if values else None
            met = int(np.sum(margins >= 0)) if len(margins) else 0
            summaries.append(ThresholdSummary(
                metric=metric, met=met, violated=len(margins) - met, best_value=best,
                best_margin=float(margins.max()) if len(margins) else None,
                median_margin=float(np.median(margins)) if len(margins) else None,
            ))
        return summaries

    def staircase(self) -> list[tuple[float, float]]:
        """The frontier of two optimized metrics as the corners of a step line, in metric units.

        Between two neighbouring frontier points the line turns at the corner both dominate
        (the worse value of each metric), so it bounds the region the frontier dominates.
        """
        if len(self.optimized_metrics) != 2 or not self.frontier:
            return []
        first, second = self.optimized_metrics
        points = sorted((p.values[first.name], p.values[second.name]) for p in self.frontier)
        worse_x = min if first.objective == "maximize" else max
        worse_y = min if second.objective == "maximize" else max
        corners = [points[0]]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            corners += [(worse_x(x0, x1), worse_y(y0, y1)), (x1, y1)]
        return corners


# -- reading ------------------------------------------------------------------------------------
def open_read_only(path: str | os.PathLike[str]) -> DuckDBStorage:
    """The store at `path` for reading; a missing file is an error, never created."""
    if not Path(path).is_file():
        raise StorageError(f"there is no database at {path}; pass --db with the DuckDB file a sweep writes "
                           "(default $PARETUNE_DB or ./paretune.duckdb)")
    return DuckDBStorage(path, read_only=True)


def experiment_report(storage: Storage, ref: int | str) -> ExperimentReport:
    """The whole report of an experiment (id or name): summary, every point, frontier, history."""
    record = storage.get_experiment(ref)
    version = report_version(storage, record.id)
    points = _points(storage, record)
    frontier = tuple(sorted((p for p in points if p.on_frontier), key=_frontier_order(record.spec)))
    return ExperimentReport(
        experiment=record,
        summary=experiment_summary(storage, record),
        points=points,
        frontier=frontier,
        history=_history(record.spec, points),
        version=version,
    )


def experiment_summary(storage: Storage, ref: int | str | ExperimentRecord) -> Summary:
    """Budget used against the budget in force, counts, failures and best values (no points read)."""
    record = ref if isinstance(ref, ExperimentRecord) else storage.get_experiment(ref)
    progress = storage.progress(record.id)
    (row,) = storage.query(
        "SELECT (SELECT count(*) FROM feasible_scores WHERE experiment_id = $1) AS feasible, "
        "greatest((SELECT max(updated_at) FROM suggestions WHERE experiment_id = $1), "
        "         (SELECT max(created_at) FROM observations WHERE experiment_id = $1), "
        "         (SELECT max(c.created_at) FROM checkpoints c JOIN runs r ON r.id = c.run_id "
        "          WHERE r.experiment_id = $1)) AS last_activity",
        [record.id],
    )
    kinds: Counter[str] = Counter()
    for reason, count in progress.failures_by_reason.items():
        kinds[failure_kind(reason)] += count
    return Summary(
        experiment_id=record.id, name=record.name, state=record.state, created_at=record.created_at,
        budget=progress.budget, observations=progress.observations, completed=progress.completed,
        failed=progress.failed, feasible=int(row["feasible"]), open_suggestions=progress.open_suggestions,
        failures_by_reason=dict(progress.failures_by_reason), failures_by_kind=dict(kinds.most_common()),
        best=_best_values(storage, record), last_activity=row["last_activity"],
    )


def report_version(storage: Storage, experiment_id: int) -> Version:
    """The few numbers that change with the experiment; a page polls this and refreshes on change."""
    rows = storage.query(
        "SELECT e.state, "
        "  (SELECT count(*) FROM observations WHERE experiment_id = e.id) AS observations, "
        "  (SELECT max(id) FROM observations WHERE experiment_id = e.id) AS last_observation_id, "
        "  (SELECT count(*) FROM suggestions WHERE experiment_id = e.id AND state = 'open') AS open_suggestions "
        "FROM experiments e WHERE e.id = ?",
        [experiment_id],
    )
    if not rows:
        storage.get_experiment(experiment_id)  # raises the store's own "no experiment" error
    row = rows[0]
    return Version(int(row["observations"]), row["last_observation_id"], int(row["open_suggestions"]), row["state"])


def frontier_points(storage: Storage, ref: int | str) -> tuple[ExperimentRecord, tuple[Point, ...]]:
    """Only the Pareto-optimal points (for the CLI): the frontier without reading every observation."""
    record = storage.get_experiment(ref)
    points = _points(storage, record, frontier_only=True)
    return record, tuple(sorted(points, key=_frontier_order(record.spec)))


def _frontier_order(spec: ExperimentSpec):  # type: ignore[no-untyped-def]
    first = spec.optimized_metrics[0]
    return lambda p: (p.values[first.name], p.observation_id)


def _points(storage: Storage, record: ExperimentRecord, frontier_only: bool = False) -> tuple[Point, ...]:
    """Every observation in one query: assignments and values pivoted to columns in SQL."""
    spec = record.spec
    parameters = list(spec.parameters)
    metrics = list(spec.metrics)
    arguments: list[Any] = [record.id, *(_json_path(p.name) for p in parameters), *(m.name for m in metrics)]
    columns = [f"json_extract_string(s.assignments, ${2 + i}) AS p{i}" for i in range(len(parameters))]
    columns += [f"max(v.value) FILTER (WHERE v.metric = ${2 + len(parameters) + i}) AS m{i}"
                for i in range(len(metrics))]
    rows = storage.query(
        "WITH feasible AS (SELECT observation_id FROM feasible_scores WHERE experiment_id = $1), "
        "frontier AS (SELECT observation_id FROM pareto_frontier WHERE experiment_id = $1), "
        "numbered AS (SELECT *, row_number() OVER (ORDER BY id) AS number FROM observations "
        "             WHERE experiment_id = $1) "
        "SELECT o.id, o.suggestion_id, o.run_id, o.failed, o.failure_reason, o.duration_s, o.created_at, "
        "       o.number, any_value(f.observation_id) IS NOT NULL AS feasible, "
        "       any_value(fr.observation_id) IS NOT NULL AS on_frontier"
        + "".join(f", {c}" for c in columns) +
        " FROM numbered o JOIN suggestions s ON s.id = o.suggestion_id "
        "LEFT JOIN feasible f ON f.observation_id = o.id "
        + ("JOIN" if frontier_only else "LEFT JOIN") + " frontier fr ON fr.observation_id = o.id "
        "LEFT JOIN observation_values v ON v.observation_id = o.id "
        "GROUP BY ALL ORDER BY o.id",
        arguments,
    )
    readers = [(f"p{i}", p.name, _reader(p)) for i, p in enumerate(parameters)]
    metric_columns = [(f"m{i}", m.name) for i, m in enumerate(metrics)]
    thresholded = [m for m in metrics if m.threshold is not None]
    points = []
    for row in rows:
        values = {name: row[column] for column, name in metric_columns if row[column] is not None}
        status: Status = "failed" if row["failed"] else "feasible" if row["feasible"] else "infeasible"
        points.append(Point(
            observation_id=row["id"], suggestion_id=row["suggestion_id"], run_id=row["run_id"], status=status,
            assignments={name: read(row[column]) for column, name, read in readers if row[column] is not None},
            values=values,
            margins={m.name: margin(m, values[m.name]) for m in thresholded if m.name in values},  # type: ignore[misc]
            failure_reason=row["failure_reason"], duration_s=row["duration_s"], created_at=row["created_at"],
            on_frontier=bool(row["on_frontier"]), number=int(row["number"]),
        ))
    return tuple(points)


def _json_path(name: str) -> str:
    return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reader(parameter: Parameter):  # type: ignore[no-untyped-def]
    """Turn the JSON text of an assignment back into the parameter's Python type."""
    if parameter.type == "categorical":
        return str
    if parameter.type == "int":
        return lambda text: int(float(text))
    return float


def _best_values(storage: Storage, record: ExperimentRecord) -> tuple[BestValue, ...]:
    """Per optimized/constraint metric, its best value among feasible observations (earliest on ties)."""
    rows = storage.query(
        "SELECT v.metric, v.value, o.id AS observation_id, o.suggestion_id, o.run_id, s.assignments "
        "FROM feasible_scores f "
        "JOIN observations o ON o.id = f.observation_id "
        "JOIN suggestions s ON s.id = o.suggestion_id "
        "JOIN observation_values v ON v.observation_id = o.id "
        "JOIN experiment_metrics m ON m.experiment_id = o.experiment_id AND m.name = v.metric "
        "WHERE f.experiment_id = ? AND m.strategy <> 'store' "
        "QUALIFY row_number() OVER (PARTITION BY v.metric ORDER BY "
        "  CASE WHEN m.objective = 'maximize' THEN -v.value ELSE v.value END, o.id) = 1",
        [record.id],
    )
    by_metric = {row["metric"]: row for row in rows}
    return tuple(
        BestValue(metric=m.name, objective=m.objective, strategy=m.strategy, value=by_metric[m.name]["value"],
                  observation_id=by_metric[m.name]["observation_id"],
                  suggestion_id=by_metric[m.name]["suggestion_id"], run_id=by_metric[m.name]["run_id"],
                  assignments=json.loads(by_metric[m.name]["assignments"]))
        for m in record.spec.required_metrics if m.name in by_metric
    )


# -- history ------------------------------------------------------------------------------------
def _history(spec: ExperimentSpec, points: tuple[Point, ...]) -> History:
    optimized = spec.optimized_metrics
    feasible = [p for p in points if p.status == "feasible"]
    names = tuple(m.name for m in optimized)
    if len(optimized) == 1:
        (metric,) = optimized
        sign = -1.0 if metric.objective == "maximize" else 1.0
        steps, best = [], math.inf
        for point in feasible:
            loss = sign * point.values[metric.name]
            if loss < best:
                best = loss
                steps.append(HistoryStep(point.number, point.values[metric.name]))
        return History("best value", names, tuple(steps), len(points))
    reference, source = _reference_point(optimized, feasible)
    signs = np.array([-1.0 if m.objective == "maximize" else 1.0 for m in optimized])
    reference_loss = signs * np.array([reference[m.name] for m in optimized])
    return History("hypervolume", names,
                   tuple(_hypervolume_steps(feasible, optimized, signs, reference_loss)),
                   len(points), reference, source)


def _reference_point(optimized: tuple[Metric, ...], feasible: list[Point]) -> tuple[dict[str, float], dict[str, str]]:
    """The threshold of each optimized metric, else its worst feasible value pushed out by a margin."""
    reference, source = {}, {}
    for metric in optimized:
        if metric.threshold is not None:
            reference[metric.name], source[metric.name] = float(metric.threshold), "threshold"
            continue
        values = [p.values[metric.name] for p in feasible]
        if not values:
            reference[metric.name], source[metric.name] = 0.0, "no feasible observation yet"
            continue
        low, high = min(values), max(values)
        pad = REFERENCE_MARGIN * (high - low) or REFERENCE_MARGIN * abs(high) or 1.0
        reference[metric.name] = low - pad if metric.objective == "maximize" else high + pad
        source[metric.name] = f"worst feasible value {'-' if metric.objective == 'maximize' else '+'} " \
                              f"{REFERENCE_MARGIN:.0%} of the range"
    return reference, source


def _hypervolume_steps(feasible: list[Point], optimized: tuple[Metric, ...], signs: np.ndarray,
                       reference: np.ndarray) -> list[HistoryStep]:
    """Hypervolume after each feasible point, kept incrementally: a point dominated by the
    current front (found by one binary search) changes nothing; a new front point adds its
    exclusive area and evicts the points it dominates."""
    first, second = (m.name for m in optimized)
    front_x: list[float] = []  # losses (minimized), sorted by x ascending; y strictly descending
    front_y: list[float] = []
    volume, steps = 0.0, []
    for point in feasible:
        x, y = signs[0] * point.values[first], signs[1] * point.values[second]
        if (before := bisect.bisect_right(front_x, x)) > 0 and front_y[before - 1] <= y:
            continue  # dominated (or equalled) by a front point with x' <= x
        position = bisect.bisect_left(front_x, x)
        gain = float(hypervolume_improvements(np.array([[x, y]]), np.column_stack([front_x, front_y])
                                              if front_x else np.zeros((0, 2)), reference)[0])
        end = position
        while end < len(front_x) and front_y[end] >= y:
            end += 1
        front_x[position:end] = [x]
        front_y[position:end] = [y]
        if gain > 0:
            volume += gain
            steps.append(HistoryStep(point.number, volume))
    return steps

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
    report.thresholds              # per thresholded metric: met, violated, best margin
    frontier_table(report.spec, report.frontier)   # the frontier as every front prints it
    point_record(report.spec, report.frontier[0])  # one frontier point as plain data (JSON, API)
    format_number(0.3935102667)    # '0.3935'

Everything derived (frontier, thresholds, history, staircase) is computed once, when the report
is read; renderers only format it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np

from paretune.optimizer import ExperimentSpec
from paretune.storage.base import Storage
from paretune.storage.history import experiment_history
from paretune.storage.records import ExperimentRecord
from paretune.storage.report_model import (
    STATUSES,
    SIGNIFICANT_DIGITS,
    BestValue,
    ExperimentReport,
    Point,
    PointColumns,
    Status,
    Summary,
    ThresholdCheck,
    ThresholdRow,
    ThresholdSummary,
    Version,
    failure_kind,
    format_number,
    margin,
    ordered_metrics,
    threshold_rule,
)


def threshold_summaries(spec: ExperimentSpec, columns: PointColumns) -> tuple[ThresholdSummary, ...]:
    """Per thresholded metric over the completed observations: met, missed, best value and margins."""
    summaries = []
    for metric in (m for m in spec.metrics if m.threshold is not None):
        margins = np.array(columns.margins[metric.name], dtype=float)
        margins = margins[~np.isnan(margins)]
        values = columns.array(metric.name)
        values = values[~np.isnan(values)]
        met = int(np.sum(margins >= 0))
        summaries.append(ThresholdSummary(
            metric=metric, met=met, violated=len(margins) - met,
            best_value=float(values.max() if metric.objective == "maximize" else values.min()) if len(values) else None,
            best_margin=float(margins.max()) if len(margins) else None,
            median_margin=float(np.median(margins)) if len(margins) else None,
        ))
    return tuple(summaries)


def staircase(spec: ExperimentSpec, frontier: tuple[Point, ...]) -> tuple[tuple[float, float], ...]:
    """The frontier of two optimized metrics as the corners of a step line, in metric units.

    Between two neighbouring frontier points the line turns at the corner both dominate
    (the worse value of each metric), so it bounds the region the frontier dominates.
    """
    if len(spec.optimized_metrics) != 2 or not frontier:
        return ()
    first, second = spec.optimized_metrics
    points = sorted((p.values[first.name], p.values[second.name]) for p in frontier)
    worse_x = min if first.objective == "maximize" else max
    worse_y = min if second.objective == "maximize" else max
    corners = [points[0]]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        corners += [(worse_x(x0, x1), worse_y(y0, y1)), (x1, y1)]
    return tuple(corners)


def frontier_table(spec: ExperimentSpec, points: tuple[Point, ...]) -> tuple[list[str], list[list[str]]]:
    """The frontier as every front prints it (CLI, Prefect artifact, demos): a header and rows of
    formatted cells: trial, run, each metric (optimized, constraint, stored), then the assignments."""
    metrics = [m.name for m in ordered_metrics(spec)]
    parameters = [c.name for c in spec.conditionals or ()] + [p.name for p in spec.parameters]
    header = ["trial", "run", *metrics, *parameters]
    rows = [[str(p.trial), format_number(p.run_id), *(format_number(p.values.get(name)) for name in metrics),
             *(format_number(p.assignments.get(name)) for name in parameters)] for p in points]
    return header, rows


def point_record(spec: ExperimentSpec, point: Point) -> dict[str, Any]:
    """A point as plain data: its ids, `values` in the spec's metric order, and its assignments.

    The one shape of a frontier point in `paretune frontier --format json`, `Experiment.frontier()`
    and `Experiment.best()`."""
    return {
        "observation_id": point.observation_id, "suggestion_id": point.suggestion_id, "trial": point.trial,
        "run_id": point.run_id,
        "values": {m.name: point.values[m.name] for m in spec.metrics if m.name in point.values},
        "assignments": point.assignments,
    }


# -- reading ------------------------------------------------------------------------------------
def experiment_report(storage: Storage, ref: int | str) -> ExperimentReport:
    """The whole report of an experiment (id or name): summary, every point, frontier, history."""
    with storage.batch():  # every number from one state of the store
        return _experiment_report(storage, ref)


def _experiment_report(storage: Storage, ref: int | str) -> ExperimentReport:
    record = storage.get_experiment(ref)
    version = report_version(storage, record.id)
    columns = _columns(storage, record)
    frontier = tuple(sorted((columns.point(i) for i, on in enumerate(columns.on_frontier) if on),
                            key=_frontier_order(record.spec)))
    return ExperimentReport(
        experiment=record,
        summary=experiment_summary(storage, record),
        columns=columns,
        frontier=frontier,
        history=experiment_history(record.spec, _counted(columns),
                                   {m.name: columns.array(m.name) for m in record.spec.optimized_metrics}),
        version=version,
        thresholds=threshold_summaries(record.spec, columns),
        staircase=staircase(record.spec, frontier),
    )


def experiment_summary(storage: Storage, ref: int | str | ExperimentRecord) -> Summary:
    """Budget used against the budget in force, counts, failures and best values (no points read)."""
    record = ref if isinstance(ref, ExperimentRecord) else storage.get_experiment(ref)
    progress = storage.progress(record.id)
    (row,) = storage.query(
        "SELECT (SELECT count(*) FROM feasible_scores WHERE experiment_id = $1) AS feasible, "
        "(SELECT full_trials_saved FROM early_stopping_summary WHERE experiment_id = $1) AS full_trials_saved, "
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
        best=_best_values(storage, record), last_activity=row["last_activity"], spent=progress.spent,
        in_cost_units=bool(record.spec.tasks), stopped=progress.stopped,
        full_trials_saved=float(row["full_trials_saved"] or 0.0),
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
    columns = _columns(storage, record, frontier_only=True)
    return record, tuple(sorted((columns.point(i) for i in range(len(columns))), key=_frontier_order(record.spec)))


def _counted(columns: PointColumns) -> np.ndarray:
    """The observations the frontier's history counts: feasible and at full cost."""
    return np.array([status == "feasible" and full for status, full in zip(columns.status, columns.full_cost)],
                    dtype=bool)


def _frontier_order(spec: ExperimentSpec):  # type: ignore[no-untyped-def]
    first = spec.optimized_metrics[0]
    return lambda p: (p.values[first.name], p.observation_id)


def _columns(storage: Storage, record: ExperimentRecord, frontier_only: bool = False) -> PointColumns:
    """Every observation in one query, fetched as columns (10^5 observations cost no Python
    loop): assignments and values pivoted in SQL."""
    spec = record.spec
    metrics = list(spec.metrics)
    # Each assignment's JSON is parsed once, into a struct typed by the spec (conditionals' values
    # are names; an inactive parameter is absent, so NULL).
    parameters = [(c.name, "categorical") for c in spec.conditionals or ()] + [(p.name, p.type) for p in spec.parameters]
    structure = json.dumps({name: _SQL_TYPES[kind] for name, kind in parameters})
    arguments: list[Any] = [record.id, structure, *(m.name for m in metrics)]
    assignment_columns = [f"a.{_identifier(name)} AS p{i}" for i, (name, _) in enumerate(parameters)]
    value_columns = [f"max(v.value) FILTER (WHERE v.metric = ${3 + i}) AS m{i}" for i in range(len(metrics))]
    names = (["id", "suggestion_id", "trial", "run_id", "failed", "stopped", "failure_reason", "duration_s", "feasible", "on_frontier",
              "full_cost"]
             + [f"p{i}" for i in range(len(parameters))] + [f"m{i}" for i in range(len(metrics))])
    row = storage.query_columns(
        "WITH obs AS (SELECT id, suggestion_id, run_id, failed, stopped, failure_reason, duration_s FROM observations "
        "             WHERE experiment_id = $1), "
        "vals AS (SELECT v.observation_id" + "".join(f", {c}" for c in value_columns) +
        "         FROM observation_values v JOIN obs ON obs.id = v.observation_id GROUP BY v.observation_id), "
        "feasible AS (SELECT observation_id FROM feasible_scores WHERE experiment_id = $1), "
        "frontier AS (SELECT observation_id FROM pareto_frontier WHERE experiment_id = $1), "
        "costs AS (SELECT observation_id, cost FROM observation_costs WHERE experiment_id = $1), "
        "trials AS (SELECT suggestion_id, trial FROM trial_numbers WHERE experiment_id = $1), "
        "rows AS (SELECT o.*, t.trial, f.observation_id IS NOT NULL AS feasible, fr.observation_id IS NOT NULL AS on_frontier, "
        "         coalesce(c.cost, 1) = 1 AS full_cost"
        + "".join(f", s.{c}" for c in assignment_columns)
        + "".join(f", vals.m{i}" for i in range(len(metrics))) +
        "         FROM obs o JOIN (SELECT id, from_json(assignments, $2) AS a FROM suggestions "
        "                          WHERE experiment_id = $1) s ON s.id = o.suggestion_id "
        "         LEFT JOIN vals ON vals.observation_id = o.id "
        "         LEFT JOIN feasible f ON f.observation_id = o.id "
        "         LEFT JOIN frontier fr ON fr.observation_id = o.id "
        "         LEFT JOIN costs c ON c.observation_id = o.id"
        "         JOIN trials t ON t.suggestion_id = o.suggestion_id"
        + (" WHERE fr.observation_id IS NOT NULL" if frontier_only else "") + ") "
        "SELECT " + ", ".join(names) + " FROM rows ORDER BY id",
        arguments,
    )
    values = {m.name: row[f"m{i}"] for i, m in enumerate(metrics)}
    margins = {}
    for metric in metrics:
        if metric.threshold is None:
            continue
        gap = margin(metric, np.array(values[metric.name], dtype=float))
        margins[metric.name] = [None if math.isnan(g) else g for g in gap.tolist()]
    return PointColumns(
        observation_id=row["id"], suggestion_id=row["suggestion_id"], trial=row["trial"], run_id=row["run_id"],
        status=["failed" if failed else "stopped" if stopped else "feasible" if feasible else "infeasible"
                for failed, stopped, feasible in zip(row["failed"], row["stopped"], row["feasible"])],
        on_frontier=row["on_frontier"], full_cost=row["full_cost"], failure_reason=row["failure_reason"],
        duration_s=row["duration_s"], assignments={name: row[f"p{i}"] for i, (name, _) in enumerate(parameters)},
        values=values, margins=margins,
    )


_SQL_TYPES = {"double": "DOUBLE", "int": "BIGINT", "categorical": "VARCHAR"}


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _best_values(storage: Storage, record: ExperimentRecord) -> tuple[BestValue, ...]:
    """Per optimized/constraint metric, its best value among feasible full-cost observations
    (earliest on ties)."""
    rows = storage.query(
        "WITH candidates AS ("
        "  SELECT v.metric, o.id, CASE WHEN m.objective = 'maximize' THEN -v.value ELSE v.value END AS loss "
        "  FROM feasible_scores f "
        "  JOIN observation_costs c ON c.observation_id = f.observation_id AND c.cost = 1 "
        "  JOIN observations o ON o.id = f.observation_id "
        "  JOIN observation_values v ON v.observation_id = o.id "
        "  JOIN experiment_metrics m ON m.experiment_id = o.experiment_id AND m.name = v.metric "
        "  WHERE f.experiment_id = ? AND m.strategy <> 'store'), "
        # the winner per metric first, then its row: joining every candidate's assignments costs more
        "best AS (SELECT metric, arg_min(id, (loss, id)) AS observation_id FROM candidates GROUP BY metric) "
        "SELECT b.metric, v.value, o.id AS observation_id, o.suggestion_id, t.trial, o.run_id, s.assignments "
        "FROM best b JOIN observations o ON o.id = b.observation_id "
        "JOIN suggestions s ON s.id = o.suggestion_id "
        "JOIN trial_numbers t ON t.suggestion_id = o.suggestion_id "
        "JOIN observation_values v ON v.observation_id = o.id AND v.metric = b.metric",
        [record.id],
    )
    by_metric = {row["metric"]: row for row in rows}
    return tuple(
        BestValue(metric=m.name, objective=m.objective, strategy=m.strategy, value=by_metric[m.name]["value"],
                  observation_id=by_metric[m.name]["observation_id"],
                  suggestion_id=by_metric[m.name]["suggestion_id"], trial=by_metric[m.name]["trial"],
                  run_id=by_metric[m.name]["run_id"],
                  assignments=json.loads(by_metric[m.name]["assignments"]))
        for m in record.spec.required_metrics if m.name in by_metric
    )


# The model's names are this module's API too: renderers import everything from here.
__all__ = [
    "STATUSES", "SIGNIFICANT_DIGITS", "BestValue", "ExperimentReport", "Point", "PointColumns", "Status",
    "Summary", "ThresholdCheck", "ThresholdRow", "ThresholdSummary", "Version", "failure_kind", "format_number",
    "margin", "ordered_metrics", "threshold_rule", "threshold_summaries", "staircase", "frontier_table",
    "point_record", "experiment_report", "experiment_summary", "report_version", "frontier_points"
]

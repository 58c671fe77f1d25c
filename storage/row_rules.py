"""The rules DuckDBStorage applies to rows inside its transactions, and its row decoders.

Each check here is the store's one copy of that rule; the fronts (the API, the CLI, the server)
translate its `StorageError` and never repeat it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import duckdb

from paretune.optimizer import (
    ExperimentSpec,
    ObservationError,
    metric_number,
    validate_value_stddevs,
    validate_values,
)
from paretune.storage.base import StorageError
from paretune.storage.records import ExperimentRecord, SuggestionRecord, budget_spent


def require_open(db: duckdb.DuckDBPyConnection, suggestion_id: int) -> None:
    """Inside a transaction: refuse unless the suggestion is still open.

    (A plain UPDATE ... RETURNING would be simpler, but DuckDB rejects RETURNING on rows that a
    foreign key references.)
    """
    rows = db.execute("SELECT state FROM suggestions WHERE id = ?", [suggestion_id]).fetchall()
    row = rows[0] if rows else None
    if row is None or row[0] != "open":
        raise StorageError(f"suggestion {suggestion_id} is {row[0] if row else 'unknown'}, not open")


def settle_state(db: duckdb.DuckDBPyConnection, experiment_id: int) -> None:
    """An experiment is `completed` once its budget is spent (`Progress.done`: less is left than
    its cheapest trial would cost), `active` again if the budget grows; an archived one stays
    archived."""
    budget, spent, spec = db.execute(
        "SELECT budget, (SELECT coalesce(sum(cost), 0) FROM observation_costs WHERE experiment_id = e.id), spec "
        "FROM experiments e WHERE id = ?", [experiment_id]).fetchone()
    least = ExperimentSpec.model_validate(json.loads(spec)).least_trial_cost
    done = budget is not None and budget_spent(budget, float(spent), least)
    db.execute("UPDATE experiments SET state = ? WHERE id = ? AND state <> 'archived'",
               ["completed" if done else "active", experiment_id])


def apply_changes(definition: dict[str, Any], *, name: str | None, parallel_bandwidth: int | None,
                   thresholds: dict[str, float | None] | None, metadata: dict[str, Any] | None) -> None:
    """Write an update's changes into a definition (as JSON), to be validated as a whole."""
    for key, value in (("name", name), ("parallel_bandwidth", parallel_bandwidth), ("metadata", metadata)):
        if value is not None:
            definition[key] = value
    metrics = {metric["name"]: metric for metric in definition["metrics"]}
    for metric_name, threshold in (thresholds or {}).items():
        if metric_name not in metrics:
            raise StorageError(f"threshold {metric_name}: the experiment has no such metric (it has "
                               f"{', '.join(metrics)})")
        metrics[metric_name]["threshold"] = threshold


def check_budget_change(db: duckdb.DuckDBPyConnection, record: ExperimentRecord, budget: Any) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise StorageError(f"an observation budget is a whole number >= 1, got {budget!r}")
    (spent, observed), = db.execute(
        "SELECT coalesce(sum(cost), 0), count(*) FROM observation_costs WHERE experiment_id = ?", [record.id]
    ).fetchall()
    if budget < spent:
        raise StorageError(f"budget {budget} is below what experiment {record.name!r} already observed: {observed} "
                           f"observation(s), {float(spent):g} of its budget of {record.budget} spent; give a budget "
                           f">= {math.ceil(spent)}")


# delete_experiment: one transaction per level, each deleting what nothing left references.
DELETE_LEVELS = (
    ("DELETE FROM checkpoints WHERE run_id IN (SELECT id FROM runs WHERE experiment_id = $1)",
     "DELETE FROM run_metrics WHERE run_id IN (SELECT id FROM runs WHERE experiment_id = $1)",
     "DELETE FROM observation_values WHERE observation_id IN "
     "(SELECT id FROM observations WHERE experiment_id = $1)",
     "DELETE FROM queued_suggestions WHERE experiment_id = $1",
     "DELETE FROM stop_decisions WHERE suggestion_id IN (SELECT id FROM suggestions WHERE experiment_id = $1)"),
    ("DELETE FROM observations WHERE experiment_id = $1",),
    ("DELETE FROM runs WHERE experiment_id = $1",),
    ("DELETE FROM suggestions WHERE experiment_id = $1",),
    ("DELETE FROM experiment_metrics WHERE experiment_id = $1",
     "DELETE FROM experiment_parameters WHERE experiment_id = $1",
     "DELETE FROM experiment_tasks WHERE experiment_id = $1"),
    ("DELETE FROM experiments WHERE id = $1",),
)


def upsert_run_metrics(db: duckdb.DuckDBPyConnection, run_id: int, metrics: dict[str, float]) -> None:
    if metrics:  # one statement: DuckDB's executemany runs one per row
        db.execute(
            "INSERT INTO run_metrics SELECT ?, unnest(?::VARCHAR[]), unnest(?::DOUBLE[]) "
            "ON CONFLICT DO UPDATE SET value = excluded.value",
            [run_id, list(metrics), list(metrics.values())],
        )


def experiment_record(row: dict[str, Any]) -> ExperimentRecord:
    return ExperimentRecord(
        id=row["id"], name=row["name"], spec=ExperimentSpec.model_validate(json.loads(row["spec"])),
        state=row["state"], created_at=row["created_at"], budget=row["budget"], project=row["project"],
    )


def suggestion_record(row: dict[str, Any]) -> SuggestionRecord:
    return SuggestionRecord(
        id=row["id"], experiment_id=row["experiment_id"], assignments=json.loads(row["assignments"]),
        state=row["state"], worker=row["worker"], created_at=row["created_at"], started_at=row["started_at"],
        updated_at=row["updated_at"], task=row["task"],
    )


def finite_values(values: dict[str, Any], what: str, *, allow_empty: bool = False) -> dict[str, float]:
    if not isinstance(values, dict) or (not values and not allow_empty):
        raise StorageError(f"give at least one {what} as a mapping of name to number")
    try:
        return {str(name): metric_number(f"{what} {name}", value) for name, value in values.items()}
    except ObservationError as error:
        raise StorageError(f"{error}: refused") from None


def json_text(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, default=str)
    except ValueError:
        raise StorageError(f"{what} contain a NaN or infinite number; JSON cannot hold it") from None


def checked_outcome(spec: ExperimentSpec, *, values: dict[str, Any] | None, failed: bool, reason: str | None,
                    value_stddevs: dict[str, Any] | None) -> tuple[dict[str, float], dict[str, float]]:
    """An observation's values and standard deviations, cleaned (`validate_values`, the one
    metric cleaner), or the refusal (`check_outcome_shape`)."""
    check_outcome_shape(failed=failed, has_values=bool(values or value_stddevs), reason=reason)
    if failed:
        return {}, {}
    try:
        clean = validate_values(spec, values or {})
        return clean, validate_value_stddevs(spec, value_stddevs, clean) or {}
    except ObservationError as error:
        raise StorageError(f"observation refused: {error}") from None


def check_outcome_shape(*, failed: bool, has_values: bool, reason: str | None) -> None:
    """A failed observation carries no values, and a reason goes only with a failure (the store's
    rule; the Python API checks it too, before its values reach the metric cleaner)."""
    if failed and has_values:
        raise StorageError("a failed observation carries no values; pass either values or failed=True")
    if not failed and reason is not None:
        raise StorageError("`reason` is for failed observations; pass failed=True with it")


def check_trial_figures(*, failed: bool, duration_s: Any, stopped_at: Any) -> None:
    """A trial's duration is a finite number >= 0; a stopped trial's share of training in (0, 1]."""
    if stopped_at is not None and (failed or isinstance(stopped_at, bool) or not isinstance(stopped_at, (int, float))
                                   or not 0 < stopped_at <= 1):
        raise StorageError(f"stopped_at must be a fidelity in (0, 1] of a trial with values, got {stopped_at!r}")
    if duration_s is not None and (isinstance(duration_s, bool) or not isinstance(duration_s, (int, float))
                                   or not math.isfinite(duration_s) or duration_s < 0):
        raise StorageError(f"duration_s must be a finite number >= 0, got {duration_s!r}")

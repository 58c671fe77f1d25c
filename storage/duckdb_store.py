"""The embedded default store: one DuckDB file holding everything.

DuckDB allows one writing process per file, so a store object is owned by one process (the
flow, the CLI, a user's ask/tell loop); within it, a lock serialises threads.
"""

from __future__ import annotations

import json
import math
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb

from optimizer import ExperimentSpec, ObservationError, validate_assignments, validate_values
from storage.artifacts import ArtifactStore
from storage.base import Storage, StorageError
from storage.records import ExperimentRecord, ObservationRecord, Progress, RunRecord, SuggestionRecord
from storage.schema import migrate

DEFAULT_DB_PATH = "paretune.duckdb"
EXPERIMENT_STATES = ("active", "completed", "archived")
RUN_STATUSES = ("running", "completed", "failed")


def default_db_path() -> str:
    """`$PARETUNE_DB`, else ./paretune.duckdb."""
    return os.environ.get("PARETUNE_DB", DEFAULT_DB_PATH)


class DuckDBStorage(Storage):
    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False):
        self.path = str(path if path is not None else default_db_path())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as error:
            raise StorageError(
                f"cannot open {self.path}: {error}. DuckDB allows one writing process per file; "
                "stop the other process (a running flow?) or pass another --db"
            ) from None
        self._connection.execute("SET enable_progress_bar = false")  # it would print into users' output
        self._lock = threading.RLock()
        if not read_only:
            migrate(self._connection)

    # -- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._connection.execute("BEGIN TRANSACTION")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def _rows(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._connection.execute(sql, parameters or [])
            columns = [d[0] for d in cursor.description or []]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(self, spec: ExperimentSpec) -> ExperimentRecord:
        optimize_rank = {m.name: rank for rank, m in enumerate(spec.optimized_metrics, start=1)}
        with self._transaction() as db:
            (experiment_id,) = db.execute(
                "INSERT INTO experiments (name, spec) VALUES (?, ?) RETURNING id", [spec.name, spec.to_json()]
            ).fetchone()
            db.executemany(
                "INSERT INTO experiment_metrics VALUES (?, ?, ?, ?, ?, ?)",
                [[experiment_id, m.name, m.objective, m.strategy, m.threshold, optimize_rank.get(m.name)]
                 for m in spec.metrics],
            )
        return self.get_experiment(int(experiment_id))

    def get_experiment(self, ref: int | str) -> ExperimentRecord:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            rows = self._rows("SELECT * FROM experiments WHERE id = ?", [int(ref)])
        else:
            rows = self._rows("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", [ref])
        if not rows:
            raise StorageError(f"no experiment {ref!r} in {self.path}; `paretune list` shows the experiments there")
        return _experiment(rows[0])

    def list_experiments(self) -> list[ExperimentRecord]:
        return [_experiment(row) for row in self._rows("SELECT * FROM experiments ORDER BY id")]

    def set_experiment_state(self, experiment_id: int, state: str) -> None:
        if state not in EXPERIMENT_STATES:
            raise StorageError(f"state must be one of {EXPERIMENT_STATES}, got {state!r}")
        self.get_experiment(experiment_id)
        with self._transaction() as db:
            db.execute("UPDATE experiments SET state = ? WHERE id = ?", [state, experiment_id])

    def _spec(self, experiment_id: int) -> ExperimentSpec:
        return self.get_experiment(experiment_id).spec

    # -- suggestions --------------------------------------------------------------------------
    def create_suggestions(
        self, experiment_id: int, batch: list[dict[str, Any]], worker: str | None = None
    ) -> list[SuggestionRecord]:
        spec = self._spec(experiment_id)
        try:
            clean = [validate_assignments(spec, assignments) for assignments in batch]
        except ObservationError as error:
            raise StorageError(f"suggestion refused: {error}") from None
        with self._transaction() as db:
            ids = [
                db.execute(
                    "INSERT INTO suggestions (experiment_id, assignments, worker) VALUES (?, ?, ?) RETURNING id",
                    [experiment_id, json.dumps(assignments), worker],
                ).fetchone()[0]
                for assignments in clean
            ]
        return [self.get_suggestion(int(i)) for i in ids]

    def get_suggestion(self, suggestion_id: int) -> SuggestionRecord:
        rows = self._rows("SELECT * FROM suggestions WHERE id = ?", [int(suggestion_id)])
        if not rows:
            raise StorageError(f"no suggestion {suggestion_id} in {self.path}")
        return _suggestion(rows[0])

    def list_suggestions(self, experiment_id: int, state: str | None = None) -> list[SuggestionRecord]:
        sql = "SELECT * FROM suggestions WHERE experiment_id = ?" + (" AND state = ?" if state else "") + " ORDER BY id"
        return [_suggestion(row) for row in self._rows(sql, [experiment_id] + ([state] if state else []))]

    def mark_suggestion_started(self, suggestion_id: int, worker: str | None) -> None:
        with self._transaction() as db:
            _require_open(db, suggestion_id)
            db.execute(
                "UPDATE suggestions SET started_at = current_timestamp, updated_at = current_timestamp, worker = ? "
                "WHERE id = ?",
                [worker, suggestion_id],
            )

    def expire_open_suggestions(self, experiment_id: int) -> list[int]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id FROM suggestions WHERE experiment_id = ? AND state = 'open'", [experiment_id]
            ).fetchall()
            db.execute(
                "UPDATE suggestions SET state = 'expired', updated_at = current_timestamp "
                "WHERE experiment_id = ? AND state = 'open'",
                [experiment_id],
            )
            db.execute(
                "UPDATE runs SET status = 'failed', failure_reason = 'expired: the flow that ran it stopped', "
                "ended_at = current_timestamp WHERE experiment_id = ? AND status = 'running' "
                "AND suggestion_id IN (SELECT id FROM suggestions WHERE state = 'expired')",
                [experiment_id],
            )
        return sorted(int(r[0]) for r in rows)

    # -- observations -------------------------------------------------------------------------
    def record_observation(
        self,
        suggestion_id: int,
        *,
        values: dict[str, float] | None = None,
        failed: bool = False,
        reason: str | None = None,
        duration_s: float | None = None,
        run_id: int | None = None,
    ) -> ObservationRecord:
        suggestion = self.get_suggestion(suggestion_id)
        if suggestion.state != "open":
            raise StorageError(
                f"suggestion {suggestion_id} is {suggestion.state}, not open: it was already observed or expired"
            )
        spec = self._spec(suggestion.experiment_id)
        if failed:
            if values:
                raise StorageError("a failed observation carries no values; pass either values or failed=True")
            clean: dict[str, float] = {}
        else:
            if reason is not None:
                raise StorageError("`reason` is for failed observations; pass failed=True with it")
            try:
                clean = validate_values(spec, values or {})
            except ObservationError as error:
                raise StorageError(f"observation refused: {error}") from None
        if duration_s is not None and (not math.isfinite(duration_s) or duration_s < 0):
            raise StorageError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
        with self._transaction() as db:
            _require_open(db, suggestion_id)
            db.execute(
                "UPDATE suggestions SET state = ?, updated_at = current_timestamp WHERE id = ?",
                ["failed" if failed else "completed", suggestion_id],
            )
            (observation_id,) = db.execute(
                "INSERT INTO observations (experiment_id, suggestion_id, run_id, failed, failure_reason, duration_s) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [suggestion.experiment_id, suggestion_id, run_id, failed,
                 (reason or "unspecified") if failed else None, duration_s],
            ).fetchone()
            if clean:
                db.executemany(
                    "INSERT INTO observation_values VALUES (?, ?, ?)",
                    [[observation_id, name, value] for name, value in clean.items()],
                )
        return self._observations("o.id = ?", [observation_id])[0]

    def observations(self, experiment_id: int) -> list[ObservationRecord]:
        return self._observations("o.experiment_id = ?", [experiment_id])

    def _observations(self, where: str, parameters: list[Any]) -> list[ObservationRecord]:
        rows = self._rows(
            "SELECT o.*, s.assignments, "
            "  (SELECT map(list(v.metric), list(v.value)) FROM observation_values v WHERE v.observation_id = o.id) AS vals "
            f"FROM observations o JOIN suggestions s ON s.id = o.suggestion_id WHERE {where} ORDER BY o.id",
            parameters,
        )
        return [
            ObservationRecord(
                id=row["id"], experiment_id=row["experiment_id"], suggestion_id=row["suggestion_id"],
                assignments=json.loads(row["assignments"]),
                values=None if row["failed"] else dict(row["vals"] or {}),
                failed=row["failed"], failure_reason=row["failure_reason"], duration_s=row["duration_s"],
                run_id=row["run_id"], created_at=row["created_at"],
            )
            for row in rows
        ]

    def progress(self, experiment_id: int) -> Progress:
        spec = self._spec(experiment_id)
        counts = self._rows(
            "SELECT count(*) FILTER (WHERE NOT failed) AS completed, count(*) FILTER (WHERE failed) AS failed "
            "FROM observations WHERE experiment_id = ?",
            [experiment_id],
        )[0]
        (open_count,) = self._rows(
            "SELECT count(*) AS n FROM suggestions WHERE experiment_id = ? AND state = 'open'", [experiment_id]
        )[0].values()
        reasons = self._rows(
            "SELECT failure_reason, count(*) AS n FROM observations WHERE experiment_id = ? AND failed "
            "GROUP BY failure_reason ORDER BY n DESC, failure_reason",
            [experiment_id],
        )
        return Progress(
            budget=spec.observation_budget,
            observations=counts["completed"] + counts["failed"],
            completed=counts["completed"],
            failed=counts["failed"],
            open_suggestions=open_count,
            failures_by_reason={r["failure_reason"]: r["n"] for r in reasons},
        )

    # -- reports ------------------------------------------------------------------------------
    def frontier(self, experiment_id: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT * FROM pareto_frontier WHERE experiment_id = ? ORDER BY value_1, value_2, observation_id",
            [experiment_id],
        )
        for row in rows:
            row["assignments"] = json.loads(row["assignments"])
        return rows

    def threshold_report(self, experiment_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM threshold_report WHERE experiment_id = ? ORDER BY observation_id", [experiment_id]
        )

    def query(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        return self._rows(sql, parameters)

    def export_experiment(self, experiment_id: int, artifacts: ArtifactStore, fmt: str = "parquet") -> list[str]:
        """Write the experiment's observations, frontier and threshold report as table files."""
        self.get_experiment(experiment_id)
        tables = {
            "observations": (
                "SELECT o.id AS observation_id, o.suggestion_id, o.run_id, o.failed, o.failure_reason, o.duration_s, "
                "o.created_at, s.assignments, (SELECT map(list(v.metric), list(v.value)) FROM observation_values v "
                "WHERE v.observation_id = o.id) AS metric_values "
                f"FROM observations o JOIN suggestions s ON s.id = o.suggestion_id WHERE o.experiment_id = {int(experiment_id)} "
                "ORDER BY o.id"
            ),
            "frontier": f"SELECT * FROM pareto_frontier WHERE experiment_id = {int(experiment_id)} ORDER BY value_1",
            "threshold_report": f"SELECT * FROM threshold_report WHERE experiment_id = {int(experiment_id)} "
                                "ORDER BY observation_id",
        }
        with self._lock:
            return [
                artifacts.export_query(self._connection, sql, f"experiment-{experiment_id}/{name}.{fmt}", fmt)
                for name, sql in tables.items()
            ]

    # -- runs ---------------------------------------------------------------------------------
    def create_run(
        self,
        name: str,
        *,
        parameters: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        experiment_id: int | None = None,
        suggestion_id: int | None = None,
        git_commit: str | None = None,
        host: str | None = None,
        device: str | None = None,
    ) -> RunRecord:
        if not name or not name.strip():
            raise StorageError("a run needs a non-empty name")
        with self._transaction() as db:
            (run_id,) = db.execute(
                "INSERT INTO runs (name, experiment_id, suggestion_id, parameters, metadata, git_commit, host, device) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [name, experiment_id, suggestion_id, _json(parameters or {}, "parameters"),
                 _json(metadata or {}, "metadata"), git_commit, host, device],
            ).fetchone()
        return self.get_run(int(run_id))

    def _running(self, run_id: int) -> RunRecord:
        run = self.get_run(run_id)
        if run.status != "running":
            raise StorageError(f"run {run_id} is {run.status}; a finished run cannot be changed")
        return run

    def log_run_parameters(self, run_id: int, parameters: dict[str, Any]) -> None:
        run = self._running(run_id)
        with self._transaction() as db:
            db.execute("UPDATE runs SET parameters = ? WHERE id = ?",
                       [_json(run.parameters | parameters, "parameters"), run_id])

    def log_run_metadata(self, run_id: int, metadata: dict[str, Any]) -> None:
        run = self._running(run_id)
        with self._transaction() as db:
            db.execute("UPDATE runs SET metadata = ? WHERE id = ?", [_json(run.metadata | metadata, "metadata"), run_id])

    def log_run_metrics(self, run_id: int, metrics: dict[str, float]) -> None:
        self._running(run_id)
        clean = _finite_values(metrics, "metric")
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO run_metrics VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
                [[run_id, name, value] for name, value in clean.items()],
            )

    def add_checkpoint(self, run_id: int, epoch: int, values: dict[str, float]) -> None:
        self.get_run(run_id)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise StorageError(f"epoch must be an integer >= 0, got {epoch!r}")
        clean = _finite_values(values, "checkpoint value")
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO checkpoints (run_id, epoch, metric, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET value = excluded.value",
                [[run_id, epoch, name, value] for name, value in clean.items()],
            )

    def finish_run(self, run_id: int, status: str, failure_reason: str | None = None) -> None:
        if status not in ("completed", "failed"):
            raise StorageError(f"a run finishes as 'completed' or 'failed', not {status!r}")
        self._running(run_id)
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, failure_reason = ?, ended_at = current_timestamp WHERE id = ?",
                [status, failure_reason if status == "failed" else None, run_id],
            )

    def get_run(self, run_id: int) -> RunRecord:
        rows = self._runs("r.id = ?", [int(run_id)])
        if not rows:
            raise StorageError(f"no run {run_id} in {self.path}")
        return rows[0]

    def list_runs(self, experiment_id: int | None = None) -> list[RunRecord]:
        if experiment_id is None:
            return self._runs("true", [])
        return self._runs("r.experiment_id = ?", [experiment_id])

    def _runs(self, where: str, parameters: list[Any]) -> list[RunRecord]:
        rows = self._rows(
            "SELECT r.*, (SELECT map(list(m.name), list(m.value)) FROM run_metrics m WHERE m.run_id = r.id) AS metric_map "
            f"FROM runs r WHERE {where} ORDER BY r.id",
            parameters,
        )
        return [
            RunRecord(
                id=row["id"], name=row["name"], status=row["status"], experiment_id=row["experiment_id"],
                suggestion_id=row["suggestion_id"], parameters=json.loads(row["parameters"]),
                metadata=json.loads(row["metadata"]), metrics=dict(row["metric_map"] or {}),
                git_commit=row["git_commit"], host=row["host"], device=row["device"],
                failure_reason=row["failure_reason"], started_at=row["started_at"], ended_at=row["ended_at"],
            )
            for row in rows
        ]

    def checkpoints(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT epoch, map(list(metric ORDER BY metric), list(value ORDER BY metric)) AS vals "
            "FROM checkpoints WHERE run_id = ? GROUP BY epoch ORDER BY epoch",
            [run_id],
        )
        return [{"epoch": row["epoch"], "values": dict(row["vals"])} for row in rows]


def _require_open(db: duckdb.DuckDBPyConnection, suggestion_id: int) -> None:
    """Inside a transaction: refuse unless the suggestion is still open.

    (A plain UPDATE ... RETURNING would be simpler, but DuckDB rejects RETURNING on rows that a
    foreign key references.)
    """
    row = db.execute("SELECT state FROM suggestions WHERE id = ?", [suggestion_id]).fetchone()
    if row is None or row[0] != "open":
        raise StorageError(f"suggestion {suggestion_id} is {row[0] if row else 'unknown'}, not open")


def _experiment(row: dict[str, Any]) -> ExperimentRecord:
    return ExperimentRecord(
        id=row["id"], name=row["name"], spec=ExperimentSpec.model_validate(json.loads(row["spec"])),
        state=row["state"], created_at=row["created_at"],
    )


def _suggestion(row: dict[str, Any]) -> SuggestionRecord:
    return SuggestionRecord(
        id=row["id"], experiment_id=row["experiment_id"], assignments=json.loads(row["assignments"]),
        state=row["state"], worker=row["worker"], created_at=row["created_at"], started_at=row["started_at"],
        updated_at=row["updated_at"],
    )


def _finite_values(values: dict[str, Any], what: str) -> dict[str, float]:
    if not isinstance(values, dict) or not values:
        raise StorageError(f"give at least one {what} as a mapping of name to number")
    clean = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise StorageError(f"{what} {name}={value!r} refused: not a finite number")
        clean[str(name)] = float(value)
    return clean


def _json(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, default=str)
    except ValueError:
        raise StorageError(f"{what} contain a NaN or infinite number; JSON cannot hold it") from None

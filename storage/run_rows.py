"""Runs, their checkpoints and stop decisions: the runs half of DuckDBStorage.

A mixin so that `DuckDBStorage` stays one object with one file session; it relies on the host's
`_transaction`, `_rows`, `get_experiment` and `get_suggestion` (storage/duckdb_store.py).
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from paretune.storage.base import StorageError
from paretune.storage.records import RunRecord
from paretune.storage.row_rules import finite_values, json_text, require_open, upsert_run_metrics

RUN_END_STATUSES = ("completed", "failed", "cancelled", "stopped")


class RunRows:
    """Storage's run methods (documented on `Storage`) over DuckDBStorage's file session."""

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
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            raise StorageError(f"a run needs a non-empty, printable name, got {name!r}")
        with self._transaction(create=experiment_id is None) as db:
            if suggestion_id is not None:
                suggestion = self.get_suggestion(suggestion_id)
                if suggestion.experiment_id != experiment_id:
                    raise StorageError(f"suggestion {suggestion_id} belongs to experiment {suggestion.experiment_id}")
                require_open(db, suggestion_id)
            elif experiment_id is not None:
                self.get_experiment(experiment_id)
            (run_id,) = db.execute(
                "INSERT INTO runs (name, experiment_id, suggestion_id, parameters, metadata, git_commit, host, device) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [name, experiment_id, suggestion_id, json_text(parameters or {}, "parameters"),
                 json_text(metadata or {}, "metadata"), git_commit, host, device],
            ).fetchall()[0]
            return self.get_run(int(run_id))

    def _running(self, run_id: int) -> RunRecord:
        run = self.get_run(run_id)
        if run.status != "running":
            raise StorageError(f"run {run_id} is {run.status}; a finished run cannot be changed")
        return run

    def log_run_parameters(self, run_id: int, parameters: dict[str, Any]) -> None:
        with self._transaction() as db:
            run = self._running(run_id)
            db.execute("UPDATE runs SET parameters = ? WHERE id = ?",
                       [json_text(run.parameters | parameters, "parameters"), run_id])

    def log_run_metadata(self, run_id: int, metadata: dict[str, Any]) -> None:
        with self._transaction() as db:
            run = self._running(run_id)
            db.execute("UPDATE runs SET metadata = ? WHERE id = ?", [json_text(run.metadata | metadata, "metadata"), run_id])

    def log_run_metrics(self, run_id: int, metrics: dict[str, float]) -> None:
        clean = finite_values(metrics, "metric")
        with self._transaction() as db:
            self._running(run_id)
            upsert_run_metrics(db, run_id, clean)

    def add_checkpoint(self, run_id: int, epoch: int, values: dict[str, float]) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise StorageError(f"epoch must be an integer >= 0, got {epoch!r}")
        clean = finite_values(values, "checkpoint value")
        with self._transaction() as db:
            self.get_run(run_id)
            db.executemany(
                "INSERT INTO checkpoints (run_id, epoch, metric, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET value = excluded.value",
                [[run_id, epoch, name, value] for name, value in clean.items()],
            )

    def finish_run(self, run_id: int, status: str, failure_reason: str | None = None,
                   metrics: dict[str, float] | None = None) -> None:
        clean = finite_values(metrics or {}, "metric", allow_empty=True)
        with self._transaction() as db:
            self._finish_run(db, run_id, clean, status, failure_reason)

    def _finish_run(self, db: duckdb.DuckDBPyConnection, run_id: int, metrics: dict[str, float], status: str,
                    failure_reason: str | None) -> None:
        if status not in RUN_END_STATUSES:
            raise StorageError(f"a run finishes as one of {RUN_END_STATUSES}, not {status!r}")
        self._running(run_id)
        upsert_run_metrics(db, run_id, metrics)
        db.execute(
            "UPDATE runs SET status = ?, failure_reason = ?, ended_at = current_timestamp WHERE id = ?",
            [status, None if status == "completed" else failure_reason, run_id],
        )

    def get_run(self, run_id: int) -> RunRecord:
        rows = self._runs("r.id = ?", [int(run_id)])
        if not rows:
            raise StorageError(f"no run {run_id} in {self.path}")
        return rows[0]

    def list_runs(self, experiment_id: int | None = None) -> list[RunRecord]:
        if not self.read_only and not self.files.path.exists():
            return []
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

    def checkpoint_curves(self, experiment_id: int) -> dict[int, list[dict[str, float]]]:
        # Column by column, one row per value: rows of DuckDB maps took 3-6 times as long to
        # fetch at 10^3-10^5 trials (benchmarks/checkpoint_scale.py).
        columns = self.query_columns(
            "SELECT r.suggestion_id, c.epoch, c.metric, c.value FROM checkpoints c JOIN runs r ON r.id = c.run_id "
            "WHERE r.experiment_id = ? AND r.suggestion_id IS NOT NULL ORDER BY r.suggestion_id, c.epoch",
            [experiment_id],
        )
        curves: dict[int, list[dict[str, float]]] = {}
        point = None
        for suggestion, epoch, metric, value in zip(columns["suggestion_id"], columns["epoch"], columns["metric"],
                                                    columns["value"]):
            if point != (suggestion, epoch):
                point = (suggestion, epoch)
                curves.setdefault(suggestion, []).append({})
            curves[suggestion][-1][metric] = value
        return curves

    def record_stop_decision(self, suggestion_id: int, checkpoint: int, should_stop: bool,
                             reasons: dict[str, bool]) -> tuple[bool, dict[str, bool]]:
        with self._transaction() as db:
            db.execute("INSERT INTO stop_decisions (suggestion_id, checkpoint, should_stop, reasons) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       [suggestion_id, checkpoint, should_stop, json_text(reasons, "reasons")])
            return self.stop_decisions(suggestion_id)[checkpoint]

    def stop_decisions(self, suggestion_id: int) -> dict[int, tuple[bool, dict[str, bool]]]:
        rows = self._rows("SELECT checkpoint, should_stop, reasons FROM stop_decisions WHERE suggestion_id = ?",
                          [suggestion_id])
        return {row["checkpoint"]: (row["should_stop"], json.loads(row["reasons"])) for row in rows}

    def checkpoints(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT epoch, map(list(metric ORDER BY metric), list(value ORDER BY metric)) AS vals "
            "FROM checkpoints WHERE run_id = ? GROUP BY epoch ORDER BY epoch",
            [run_id],
        )
        return [{"epoch": row["epoch"], "values": dict(row["vals"])} for row in rows]

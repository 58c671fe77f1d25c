"""The embedded default store: one DuckDB file holding everything, shared by many processes.

A writing store (the flow, the CLI's write commands, a user's ask/tell loop) holds the file
only while one of its calls runs, under paretune's lock, and republishes ``<db>.read`` after
every call that wrote; a read-only store (the CLI's read commands, the report flow, the
dashboard) reads that published copy and never blocks a writer (storage/files.py explains
why). Within a process, a lock per store serialises threads.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import duckdb

from paretune.optimizer import (
    ExperimentSpec,
    ObservationError,
    SpecError,
    validate_assignments,
    validate_task,
)
from paretune.storage.artifacts import ArtifactStore
from paretune.storage.base import Storage, StorageError
from paretune.storage.files import DatabaseLocked
from paretune.storage.records import (
    ExperimentRecord,
    ObservationRecord,
    Progress,
    RunEnvironment,
    SuggestionRecord,
)
from paretune.storage.row_rules import (
    DELETE_LEVELS,
    apply_changes,
    check_budget_change,
    check_trial_figures,
    checked_outcome,
    experiment_record,
    finite_values,
    json_text,
    require_open,
    settle_state,
    suggestion_record,
)
from paretune.storage.run_rows import RunRows
from paretune.storage.session import FileSession

DEFAULT_DB_PATH = "paretune.duckdb"
EXPERIMENT_STATES = ("active", "completed", "archived")
# How long a call waits for another process's write session (or a foreign program's hold on the
# file) before it is refused. Write sessions last milliseconds; this covers a busy machine.
LOCK_TIMEOUT_S = 60.0


def default_db_path() -> str:
    """`$PARETUNE_DB`, else ./paretune.duckdb."""
    return os.environ.get("PARETUNE_DB", DEFAULT_DB_PATH)


class DuckDBStorage(RunRows, Storage):
    """The Storage contract on one DuckDB file.

    `read_only=True` opens the published copy: it never creates, migrates or writes the file,
    and works while other processes write. A writing store creates the file with the first
    experiment or run stored in it (a refused call leaves no file behind) and migrates an older
    file forward when it opens it.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False,
                 lock_timeout_s: float = LOCK_TIMEOUT_S):
        self.path = str(path if path is not None else default_db_path())
        self.read_only = read_only
        self._file = FileSession(self.path, read_only=read_only, lock_timeout_s=lock_timeout_s)
        self.files = self._file.files

    # -- sessions (storage/session.py) --------------------------------------------------------------
    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Hold the file across several calls (`FileSession.batch`): one attach, one publish at
        the end for a writer; one consistent published copy for a reader."""
        return self._file.batch()

    def _session(self, *, create: bool = False) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._file.session(create=create)

    def _transaction(self, *, create: bool = False) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        return self._file.transaction(create=create)

    def _rows(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        return self._file.rows(sql, parameters)

    def sql_connection(self) -> duckdb.DuckDBPyConnection:
        """Hand this reader's DuckDB connection over for SQL of your own; the store is done.

        The connection holds one consistent copy for as long as it stays open: reconnect to see
        newer data.
        """
        return self._file.sql_connection()

    def close(self) -> None:
        self._file.close()

    # -- experiments --------------------------------------------------------------------------
    def create_experiment(self, spec: ExperimentSpec, *, allow_duplicate_name: bool = False) -> ExperimentRecord:
        optimize_rank = {m.name: rank for rank, m in enumerate(spec.optimized_metrics, start=1)}
        with self._transaction(create=True) as db:
            if not allow_duplicate_name:
                same = db.execute("SELECT id FROM experiments WHERE name = ? ORDER BY id", [spec.name]).fetchall()
                if same:
                    raise StorageError(
                        f"an experiment named {spec.name!r} already exists in {self.path} (id {same[-1][0]}); "
                        "rename it in the definition, or allow a duplicate name (--allow-duplicate-name)"
                    )
            (experiment_id,) = db.execute(
                "INSERT INTO experiments (name, spec, budget, project) VALUES (?, ?, ?, ?) RETURNING id",
                [spec.name, spec.to_json(), spec.observation_budget, spec.project],
            ).fetchall()[0]
            db.executemany(
                "INSERT INTO experiment_metrics VALUES (?, ?, ?, ?, ?, ?)",
                [[experiment_id, m.name, m.objective, m.strategy, m.threshold, optimize_rank.get(m.name)]
                 for m in spec.metrics],
            )
            db.executemany("INSERT INTO experiment_parameters VALUES (?, ?, ?)",
                           [[experiment_id, p.name, p.type] for p in spec.parameters]
                           + [[experiment_id, c.name, "conditional"] for c in spec.conditionals or ()])
            if spec.tasks:
                db.executemany("INSERT INTO experiment_tasks VALUES (?, ?, ?)",
                               [[experiment_id, t.name, t.cost] for t in spec.tasks])
            return self.get_experiment(int(experiment_id))

    def get_experiment(self, ref: int | str) -> ExperimentRecord:
        if not self.read_only and not self.files.path.exists():
            raise StorageError(f"no experiment {ref!r}: there is no database at {self.files.path} yet")
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            rows = self._rows("SELECT * FROM experiments WHERE id = ?", [int(ref)])
        else:
            rows = self._rows("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", [ref])
        if not rows:
            raise StorageError(f"no experiment {ref!r} in {self.path}; `paretune list` shows the experiments there")
        return experiment_record(rows[0])

    def list_experiments(self) -> list[ExperimentRecord]:
        if not self.read_only and not self.files.path.exists():
            return []
        return [experiment_record(row) for row in self._rows("SELECT * FROM experiments ORDER BY id")]

    def set_experiment_state(self, experiment_id: int, state: str) -> None:
        if state not in EXPERIMENT_STATES:
            raise StorageError(f"state must be one of {EXPERIMENT_STATES}, got {state!r}")
        with self._transaction() as db:
            self.get_experiment(experiment_id)
            db.execute("UPDATE experiments SET state = ? WHERE id = ?", [state, experiment_id])

    def set_observation_budget(self, experiment_id: int, budget: int) -> None:
        with self._transaction() as db:
            self.get_experiment(experiment_id)
            if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
                raise StorageError(f"an observation budget is a whole number >= 1, got {budget!r}")
            db.execute("UPDATE experiments SET budget = ? WHERE id = ?", [budget, experiment_id])
            settle_state(db, experiment_id)

    def update_experiment(self, experiment_id: int, *, name: str | None = None, budget: int | None = None,
                          parallel_bandwidth: int | None = None, thresholds: dict[str, float | None] | None = None,
                          metadata: dict[str, Any] | None = None) -> ExperimentRecord:
        """Change what a SigOpt user may change mid-experiment, in one transaction; the stored
        definition changes with it, so the search uses a new threshold at once. `thresholds` maps
        metric names to a new threshold (None removes one); `metadata` replaces the metadata.

        Refused, writing nothing: a definition the change would make invalid, a name another
        experiment has, a budget below what was already observed.
        """
        with self._transaction() as db:
            record = self.get_experiment(experiment_id)
            definition = json.loads(record.spec.to_json())
            apply_changes(definition, name=name, parallel_bandwidth=parallel_bandwidth, thresholds=thresholds,
                           metadata=metadata)
            try:
                spec = ExperimentSpec.model_validate(definition)
            except SpecError as error:
                raise StorageError(f"update refused: {error}") from None
            if name is not None and name != record.name and db.execute(
                    "SELECT 1 FROM experiments WHERE name = ? AND id <> ?", [name, experiment_id]).fetchall():
                raise StorageError(f"update refused: another experiment is named {name!r}; choose another name")
            if budget is not None:
                check_budget_change(db, record, budget)
            db.execute("UPDATE experiments SET name = ?, spec = ?, budget = ? WHERE id = ?",
                       [spec.name, spec.to_json(), record.budget if budget is None else budget, experiment_id])
            db.executemany("UPDATE experiment_metrics SET threshold = ? WHERE experiment_id = ? AND name = ?",
                           [[m.threshold, experiment_id, m.name] for m in spec.metrics])
            settle_state(db, experiment_id)
            return self.get_experiment(experiment_id)

    def delete_experiment(self, experiment_id: int) -> None:
        """Delete an experiment and everything recorded for it; no other experiment's rows change.

        DuckDB refuses to delete a row and the rows referencing it in one transaction, so this
        runs one transaction per level of references, holding the file throughout. The first
        archives the experiment: an interrupted delete leaves it archived, and deleting it again
        finishes the job.
        """
        with self.batch():
            self.set_experiment_state(experiment_id, "archived")
            for statements in DELETE_LEVELS:
                with self._transaction() as db:
                    for statement in statements:
                        db.execute(statement, [experiment_id])

    def _spec(self, experiment_id: int) -> ExperimentSpec:
        return self.get_experiment(experiment_id).spec

    # -- suggestions --------------------------------------------------------------------------
    def create_suggestions(
        self, experiment_id: int, batch: list[dict[str, Any]], worker: str | None = None,
        tasks: list[str | None] | None = None,
    ) -> list[SuggestionRecord]:
        tasks = tasks if tasks is not None else [None] * len(batch)
        if len(tasks) != len(batch):
            raise StorageError(f"{len(batch)} suggestions but {len(tasks)} tasks; give one task per suggestion")
        with self._transaction() as db:
            record = self.get_experiment(experiment_id)
            if record.state == "archived":
                raise StorageError(f"experiment {record.name!r} (id {experiment_id}) is archived: it suggests nothing "
                                   "more; its data stay readable (unarchive it to go on)")
            spec = record.spec
            try:
                clean = [(validate_assignments(spec, assignments), validate_task(spec, task))
                         for assignments, task in zip(batch, tasks)]
            except ObservationError as error:
                raise StorageError(f"suggestion refused: {error}") from None
            ids = [
                db.execute(
                    "INSERT INTO suggestions (experiment_id, assignments, worker, task) VALUES (?, ?, ?, ?) RETURNING id",
                    [experiment_id, json.dumps(assignments), worker, task],
                ).fetchall()[0][0]
                for assignments, task in clean
            ]
            return [self.get_suggestion(int(i)) for i in ids]

    def get_suggestion(self, suggestion_id: int) -> SuggestionRecord:
        rows = self._rows("SELECT * FROM suggestions WHERE id = ?", [int(suggestion_id)])
        if not rows:
            raise StorageError(f"no suggestion {suggestion_id} in {self.path}")
        return suggestion_record(rows[0])

    def list_suggestions(self, experiment_id: int, state: str | None = None) -> list[SuggestionRecord]:
        sql = "SELECT * FROM suggestions WHERE experiment_id = ?" + (" AND state = ?" if state else "") + " ORDER BY id"
        return [suggestion_record(row) for row in self._rows(sql, [experiment_id] + ([state] if state else []))]

    def start_trial(self, suggestion_id: int, *, worker: str | None, run_id: int | None = None,
                    environment: RunEnvironment | None = None) -> None:
        with self._transaction() as db:
            require_open(db, suggestion_id)
            db.execute(
                "UPDATE suggestions SET started_at = current_timestamp, updated_at = current_timestamp, worker = ? "
                "WHERE id = ?",
                [worker, suggestion_id],
            )
            if run_id is not None and environment is not None:
                run = self._running(run_id)
                db.execute(
                    "UPDATE runs SET host = ?, device = ?, git_commit = ?, metadata = ? WHERE id = ?",
                    [environment.host, environment.device, environment.git_commit,
                     json_text(run.metadata | environment.metadata() | ({"worker": worker} if worker else {}), "metadata"),
                     run_id],
                )

    def expire_open_suggestions(self, experiment_id: int) -> list[int]:
        return self._end_open_suggestions(experiment_id, None, "expired", "expired: the flow that ran it stopped")

    def cancel_suggestions(self, experiment_id: int, suggestion_ids: list[int], reason: str) -> list[int]:
        return self._end_open_suggestions(experiment_id, suggestion_ids, "cancelled", reason)

    def _end_open_suggestions(self, experiment_id: int, suggestion_ids: list[int] | None, state: str,
                              reason: str) -> list[int]:
        """Close open suggestions without an observation, and their running runs, in one transaction."""
        with self._transaction() as db:
            chosen = "" if suggestion_ids is None else " AND list_contains(?, id)"
            parameters: list[Any] = [experiment_id] + ([] if suggestion_ids is None else [list(suggestion_ids)])
            rows = db.execute(
                f"SELECT id FROM suggestions WHERE experiment_id = ? AND state = 'open'{chosen}", parameters
            ).fetchall()
            ids = sorted(int(r[0]) for r in rows)
            if ids:
                db.execute(
                    "UPDATE runs SET status = ?, failure_reason = ?, ended_at = current_timestamp "
                    "WHERE status = 'running' AND list_contains(?, suggestion_id)",
                    ["failed" if state == "expired" else "cancelled", reason, ids],
                )
                db.execute(
                    "UPDATE suggestions SET state = ?, updated_at = current_timestamp WHERE list_contains(?, id)",
                    [state, ids],
                )
            return ids

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
        run_metrics: dict[str, float] | None = None,
        value_stddevs: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
        stopped_at: float | None = None,
    ) -> ObservationRecord:
        """`stopped_at`: the trial was stopped early, having trained this share (its fidelity,
        in (0, 1]) of a full trial; it closes `stopped` with the values given."""
        check_trial_figures(failed=failed, duration_s=duration_s, stopped_at=stopped_at)
        with self._transaction() as db:
            suggestion = self.get_suggestion(suggestion_id)
            if suggestion.state != "open":
                raise StorageError(f"suggestion {suggestion_id} is {suggestion.state}, not open: "
                                   "it was already observed, expired or cancelled")
            clean, stddevs = checked_outcome(self._spec(suggestion.experiment_id), values=values, failed=failed,
                                             reason=reason, value_stddevs=value_stddevs)
            state = "failed" if failed else "stopped" if stopped_at is not None else "completed"
            if run_id is not None:
                run = self.get_run(run_id)
                if run.suggestion_id != suggestion_id or run.status != "running":
                    raise StorageError(f"run {run_id} is not the running run of suggestion {suggestion_id}")
                self._finish_run(db, run_id, clean | finite_values(run_metrics or {}, "metric", allow_empty=True),
                                 state, reason if failed else None)
            db.execute("UPDATE suggestions SET state = ?, updated_at = current_timestamp WHERE id = ?",
                       [state, suggestion_id])
            failure_reason = (reason or "unspecified") if failed else None
            stored_metadata = json_text(metadata or {}, "metadata")
            observation_id, created_at = db.execute(
                "INSERT INTO observations (experiment_id, suggestion_id, run_id, failed, failure_reason, duration_s, "
                "task, metadata, stopped, fidelity) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, created_at",
                [suggestion.experiment_id, suggestion_id, run_id, failed, failure_reason, duration_s, suggestion.task,
                 stored_metadata, stopped_at is not None, stopped_at],
            ).fetchall()[0]
            if clean:
                db.execute(
                    "INSERT INTO observation_values "
                    "SELECT ?, unnest(?::VARCHAR[]), unnest(?::DOUBLE[]), unnest(?::DOUBLE[])",
                    [observation_id, list(clean), list(clean.values()), [stddevs.get(name) for name in clean]],
                )
            settle_state(db, suggestion.experiment_id)
            return ObservationRecord(
                id=observation_id, experiment_id=suggestion.experiment_id, suggestion_id=suggestion_id,
                assignments=suggestion.assignments, values=None if failed else dict(clean), failed=failed,
                failure_reason=failure_reason, duration_s=None if duration_s is None else float(duration_s),
                run_id=run_id, created_at=created_at, value_stddevs=dict(stddevs) or None, task=suggestion.task,
                metadata=json.loads(stored_metadata), stopped=stopped_at is not None,
                fidelity=None if stopped_at is None else float(stopped_at),
            )

    def observations(self, experiment_id: int, *, after_id: int | None = None) -> list[ObservationRecord]:
        """The experiment's observations in id order; `after_id`: only the newer ones (a cache's update)."""
        if after_id is None:
            return self._observations("o.experiment_id = ?", [experiment_id])
        return self._observations("o.experiment_id = ? AND o.id > ?", [experiment_id, after_id])

    def observation_page(self, experiment_id: int, *, before_id: int | None = None,
                         limit: int = 100) -> list[ObservationRecord]:
        """Newest first: at most `limit` observations with ids below `before_id` (SigOpt's paging),
        without reading the others."""
        if before_id is None:
            return self._observations("o.experiment_id = ?", [experiment_id], newest_first=True, limit=limit)
        return self._observations("o.experiment_id = ? AND o.id < ?", [experiment_id, before_id], newest_first=True,
                                  limit=limit)

    def _observations(self, where: str, parameters: list[Any], *, newest_first: bool = False,
                      limit: int | None = None) -> list[ObservationRecord]:
        # The filter and the order go into a subquery first, so the values are read for those rows only.
        order = "o.id DESC" if newest_first else "o.id"
        chosen = f"SELECT * FROM observations o WHERE {where} ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self._rows(
            "SELECT o.*, s.assignments, "
            "  (SELECT map(list(v.metric), list(v.value)) FROM observation_values v WHERE v.observation_id = o.id) AS vals, "
            "  (SELECT map(list(v.metric), list(v.value_stddev)) FROM observation_values v "
            "   WHERE v.observation_id = o.id AND v.value_stddev IS NOT NULL) AS stddevs "
            f"FROM ({chosen}) o JOIN suggestions s ON s.id = o.suggestion_id ORDER BY {order}",
            parameters,
        )
        return [
            ObservationRecord(
                id=row["id"], experiment_id=row["experiment_id"], suggestion_id=row["suggestion_id"],
                assignments=json.loads(row["assignments"]),
                values=None if row["failed"] else dict(row["vals"] or {}),
                failed=row["failed"], failure_reason=row["failure_reason"], duration_s=row["duration_s"],
                run_id=row["run_id"], created_at=row["created_at"],
                value_stddevs=dict(row["stddevs"]) if row["stddevs"] else None, task=row["task"],
                metadata=json.loads(row["metadata"] or "{}"), stopped=row["stopped"], fidelity=row["fidelity"],
            )
            for row in rows
        ]

    def progress(self, experiment_id: int) -> Progress:
        # One statement: the tuning loop reads this for every trial it starts.
        rows = self._rows(
            "WITH observed AS (SELECT o.failed, o.stopped, o.failure_reason, c.cost FROM observations o "
            "                  JOIN observation_costs c ON c.observation_id = o.id WHERE o.experiment_id = $1), "
            "opened AS (SELECT coalesce(t.cost, 1.0) AS cost FROM suggestions s "
            "           LEFT JOIN experiment_tasks t ON t.experiment_id = s.experiment_id AND t.name = s.task "
            "           WHERE s.experiment_id = $1 AND s.state = 'open'), "
            "reasons AS (SELECT failure_reason, count(*) AS n FROM observed WHERE failed GROUP BY failure_reason) "
            "SELECT e.budget, e.spec, "
            "  (SELECT count(*) FILTER (WHERE NOT failed AND NOT stopped) FROM observed) AS completed, "
            "  (SELECT count(*) FILTER (WHERE stopped) FROM observed) AS stopped, "
            "  (SELECT count(*) FILTER (WHERE failed) FROM observed) AS failed, "
            "  (SELECT coalesce(sum(cost), 0) FROM observed) AS spent, "
            "  (SELECT count(*) FROM opened) AS open, (SELECT coalesce(sum(cost), 0) FROM opened) AS open_cost, "
            "  (SELECT coalesce(list((failure_reason, n) ORDER BY n DESC, failure_reason), []) FROM reasons) "
            "    AS reasons "
            "FROM experiments e WHERE e.id = $1",
            [experiment_id],
        )
        if not rows:
            self.get_experiment(experiment_id)  # raises the store's own "no experiment" error
        row = rows[0]
        return Progress(
            budget=row["budget"],
            observations=row["completed"] + row["failed"] + row["stopped"],
            completed=row["completed"],
            failed=row["failed"],
            open_suggestions=row["open"],
            failures_by_reason=dict(row["reasons"]),
            spent=float(row["spent"]),
            open_cost=float(row["open_cost"]),
            stopped=row["stopped"],
            least_trial_cost=ExperimentSpec.model_validate(json.loads(row["spec"])).least_trial_cost,
        )

    # -- reports ------------------------------------------------------------------------------
    def threshold_report(self, experiment_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM threshold_report WHERE experiment_id = ? ORDER BY observation_id", [experiment_id]
        )

    def query(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        return self._rows(sql, parameters)

    def query_columns(self, sql: str, parameters: list[Any] | None = None) -> dict[str, list[Any]]:
        with self._session() as db:
            # numpy's tolist() builds the Python values in C (masked entries, DuckDB's NULLs, as None)
            return {name: array.tolist() for name, array in db.execute(sql, parameters or []).fetchnumpy().items()}

    def export_experiment(self, experiment_id: int, artifacts: ArtifactStore, fmt: str = "parquet") -> list[str]:
        """Write the experiment's observations, frontier and threshold report as table files."""
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
        with self._session() as db:
            self.get_experiment(experiment_id)
            return [artifacts.export_query(db, sql, f"experiment-{experiment_id}/{name}.{fmt}", fmt)
                    for name, sql in tables.items()]


def connect(path: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the store, safe while sweeps write (users' own SQL).

    It reads the copy the writers publish (``<db>.read``) as of the moment it opens, holds no
    lock a writer waits on, and refuses writes; every documented table and view is there.
    """
    return DuckDBStorage(path, read_only=True).sql_connection()


__all__ = ["DEFAULT_DB_PATH", "DatabaseLocked", "DuckDBStorage", "LOCK_TIMEOUT_S", "connect", "default_db_path"]

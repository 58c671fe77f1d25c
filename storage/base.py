"""The one interface every part of paretune stores through (like Optuna's BaseStorage).

The contract every implementation keeps:

- **Validation.** What a call is given is checked against the experiment's spec; a refused call
  raises `StorageError` and leaves nothing behind.
- **Atomicity.** Each call is one transaction. In particular `record_observation` closes a
  trial whole: the suggestion's state, the observation with its values, and (given `run_id`) the
  run's metrics and status commit together or not at all.
- **Lifecycle.** A suggestion is `open` until exactly one of: `completed` or `failed` (it has an
  observation), `expired` (the process running it died; `expire_open_suggestions`) or
  `cancelled` (its run was cancelled; `cancel_suggestions`). Only open suggestions change.
- **Concurrency.** Several processes may write one store; each call sees every call committed
  before it. A store opened read-only sees a committed state at most one write behind, and never
  stops a writer.
"""

from __future__ import annotations

import abc
import json
from contextlib import contextmanager
from typing import Any, Iterator

from paretune.optimizer import ExperimentSpec, Observation
from paretune.storage.records import (
    ExperimentRecord,
    ObservationRecord,
    Progress,
    RunEnvironment,
    RunRecord,
    SuggestionRecord,
)


def observation_of(record: ObservationRecord) -> Observation:
    """A stored observation as the optimizer takes it: a trial stopped early as a lower-fidelity
    one (the share of its checkpoints it trained), never as a failure."""
    return Observation(assignments=record.assignments, values=None if record.failed else record.values,
                       failed=record.failed, failure_reason=record.failure_reason, value_stddevs=record.value_stddevs,
                       task=record.task,
                       fidelity=record.fidelity if record.stopped and record.fidelity is not None else 1.0)


class StorageError(ValueError):
    """A request the store refused (unknown id, wrong state, bad values); nothing was written."""


class Storage(abc.ABC):
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group calls: writes share one hold of the store, reads see one consistent state.

        Implementations that hold nothing between calls may keep the default (no grouping).
        """
        yield

    # -- experiments --------------------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(self, spec: ExperimentSpec, *, allow_duplicate_name: bool = False) -> ExperimentRecord:
        """Store a new experiment; a name already in the store is refused unless allowed."""

    @abc.abstractmethod
    def get_experiment(self, ref: int | str) -> ExperimentRecord:
        """By id, or by name (the newest experiment of that name)."""

    @abc.abstractmethod
    def list_experiments(self) -> list[ExperimentRecord]: ...

    @abc.abstractmethod
    def set_experiment_state(self, experiment_id: int, state: str) -> None: ...

    @abc.abstractmethod
    def set_observation_budget(self, experiment_id: int, budget: int) -> None:
        """Change the budget in force (an override or an extension); the state follows it."""

    @abc.abstractmethod
    def update_experiment(self, experiment_id: int, *, name: str | None = None, budget: int | None = None,
                          parallel_bandwidth: int | None = None, thresholds: dict[str, float | None] | None = None,
                          metadata: dict[str, Any] | None = None) -> ExperimentRecord:
        """Change name, budget, parallel bandwidth, metric thresholds or metadata; a budget below
        what was observed is refused."""

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: int) -> None:
        """Delete an experiment and everything recorded for it; nothing else changes."""

    # -- suggestions --------------------------------------------------------------------------
    @abc.abstractmethod
    def create_suggestions(
        self, experiment_id: int, batch: list[dict[str, Any]], worker: str | None = None,
        tasks: list[str | None] | None = None,
    ) -> list[SuggestionRecord]:
        """Record new open suggestions (all or none), each with its task when the experiment has
        tasks; an archived experiment is refused."""

    @abc.abstractmethod
    def get_suggestion(self, suggestion_id: int) -> SuggestionRecord: ...

    @abc.abstractmethod
    def list_suggestions(self, experiment_id: int, state: str | None = None) -> list[SuggestionRecord]: ...

    @abc.abstractmethod
    def start_trial(self, suggestion_id: int, *, worker: str | None, run_id: int | None = None,
                    environment: RunEnvironment | None = None) -> None:
        """An open suggestion began running on `worker`; its run (if any) takes the host, device
        and git commit where it runs."""

    @abc.abstractmethod
    def expire_open_suggestions(self, experiment_id: int) -> list[int]:
        """Mark every open suggestion expired and its running run failed (a dead process's
        leftovers); return their ids."""

    @abc.abstractmethod
    def cancel_suggestions(self, experiment_id: int, suggestion_ids: list[int], reason: str) -> list[int]:
        """Mark these suggestions, where still open, cancelled and their running runs cancelled
        with `reason`; return the ids changed."""

    # -- observations -------------------------------------------------------------------------
    @abc.abstractmethod
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
    ) -> ObservationRecord:
        """Close an open suggestion with its metric values (and their standard deviations, where
        measured), or as failed with a reason. The observation takes the suggestion's task.

        With `run_id` (the suggestion's running run), the run ends in the same transaction,
        `completed` or `failed`, holding `values` plus `run_metrics` (metrics the experiment does
        not track).
        """

    @abc.abstractmethod
    def observations(self, experiment_id: int) -> list[ObservationRecord]: ...

    @abc.abstractmethod
    def progress(self, experiment_id: int) -> Progress: ...

    def history(self, experiment_id: int) -> list[Observation]:
        """Observations as the optimizer takes them (`observation_of`)."""
        return [observation_of(o) for o in self.observations(experiment_id)]

    def pending(self, experiment_id: int) -> list[dict[str, Any]]:
        """Assignments of suggestions still open (in flight somewhere)."""
        return [s.assignments for s in self.list_suggestions(experiment_id, state="open")]

    # -- early stopping -----------------------------------------------------------------------
    @abc.abstractmethod
    def checkpoint_curves(self, experiment_id: int) -> dict[int, list[dict[str, float]]]:
        """Each trial's checkpoint values in the order reported, by suggestion id."""

    def suggestion_assignments(self, experiment_id: int) -> dict[int, dict[str, Any]]:
        """Each suggestion's assignments by id, read column by column (as `checkpoint_curves`):
        a rung of Pareto early stopping projects its trials' growth from them."""
        columns = self.query_columns("SELECT id, CAST(assignments AS VARCHAR) AS assignments FROM suggestions "
                                     "WHERE experiment_id = ?", [experiment_id])
        return {suggestion: json.loads(text) for suggestion, text in zip(columns["id"], columns["assignments"])}

    @abc.abstractmethod
    def record_stop_decision(self, suggestion_id: int, checkpoint: int, should_stop: bool,
                             reasons: dict[str, bool]) -> tuple[bool, dict[str, bool]]:
        """Keep the answer to a trial's checkpoint number `checkpoint`, unless one is kept
        already; return the kept one (an answer is given once, and the same ever after)."""

    @abc.abstractmethod
    def stop_decisions(self, suggestion_id: int) -> dict[int, tuple[bool, dict[str, bool]]]:
        """The answers kept for a trial, by checkpoint number."""

    # -- reports ------------------------------------------------------------------------------
    @abc.abstractmethod
    def threshold_report(self, experiment_id: int) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def query(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        """Run read-only SQL against the store (tables and views are documented in the README)."""

    @abc.abstractmethod
    def query_columns(self, sql: str, parameters: list[Any] | None = None) -> dict[str, list[Any]]:
        """The same, answered column by column (name -> values in row order, NULL as None), for
        number, boolean and text columns.

        For reports over every observation: building 10^5 rows of Python objects costs more
        than the query itself.
        """

    def trial_numbers(self, experiment_id: int, suggestion_ids: list[int] | None = None) -> dict[int, int]:
        """Suggestion id -> its trial number within the experiment (the `trial_numbers` view): the
        number people read; the global suggestion id is the key in the data."""
        if suggestion_ids is not None and not suggestion_ids:
            return {}
        where = "" if suggestion_ids is None else f" AND suggestion_id IN ({', '.join(str(int(i)) for i in suggestion_ids)})"
        columns = self.query_columns(f"SELECT suggestion_id, trial FROM trial_numbers WHERE experiment_id = ?{where}",
                                     [experiment_id])
        return dict(zip(columns["suggestion_id"], columns["trial"]))

    # -- runs ---------------------------------------------------------------------------------
    @abc.abstractmethod
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
    ) -> RunRecord: ...

    @abc.abstractmethod
    def log_run_parameters(self, run_id: int, parameters: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def log_run_metrics(self, run_id: int, metrics: dict[str, float]) -> None: ...

    @abc.abstractmethod
    def log_run_metadata(self, run_id: int, metadata: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def add_checkpoint(self, run_id: int, epoch: int, values: dict[str, float]) -> None: ...

    @abc.abstractmethod
    def finish_run(self, run_id: int, status: str, failure_reason: str | None = None,
                   metrics: dict[str, float] | None = None) -> None:
        """End a running run `completed`, `failed` or `cancelled`, with its last metrics."""

    @abc.abstractmethod
    def get_run(self, run_id: int) -> RunRecord: ...

    @abc.abstractmethod
    def list_runs(self, experiment_id: int | None = None) -> list[RunRecord]: ...

    @abc.abstractmethod
    def checkpoints(self, run_id: int) -> list[dict[str, Any]]:
        """One row per epoch: {"epoch": n, "values": {metric: value}}."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

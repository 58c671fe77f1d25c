"""The one interface every part of paretune stores through (like Optuna's BaseStorage).

Implementations validate what they are given against the experiment's spec and write each
call atomically: a refused call leaves nothing behind.
"""

from __future__ import annotations

import abc
from typing import Any

from optimizer import ExperimentSpec, Observation
from storage.records import ExperimentRecord, ObservationRecord, Progress, RunRecord, SuggestionRecord


class StorageError(ValueError):
    """A request the store refused (unknown id, wrong state, bad values); nothing was written."""


class Storage(abc.ABC):
    # -- experiments --------------------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(self, spec: ExperimentSpec) -> ExperimentRecord: ...

    @abc.abstractmethod
    def get_experiment(self, ref: int | str) -> ExperimentRecord:
        """By id, or by name (the newest experiment of that name)."""

    @abc.abstractmethod
    def list_experiments(self) -> list[ExperimentRecord]: ...

    @abc.abstractmethod
    def set_experiment_state(self, experiment_id: int, state: str) -> None: ...

    # -- suggestions --------------------------------------------------------------------------
    @abc.abstractmethod
    def create_suggestions(
        self, experiment_id: int, batch: list[dict[str, Any]], worker: str | None = None
    ) -> list[SuggestionRecord]:
        """Record new open suggestions (all or none)."""

    @abc.abstractmethod
    def get_suggestion(self, suggestion_id: int) -> SuggestionRecord: ...

    @abc.abstractmethod
    def list_suggestions(self, experiment_id: int, state: str | None = None) -> list[SuggestionRecord]: ...

    @abc.abstractmethod
    def mark_suggestion_started(self, suggestion_id: int, worker: str | None) -> None: ...

    @abc.abstractmethod
    def expire_open_suggestions(self, experiment_id: int) -> list[int]:
        """Mark every open suggestion expired (a dead run's leftovers); return their ids."""

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
    ) -> ObservationRecord:
        """Close an open suggestion with its metric values, or as failed with a reason."""

    @abc.abstractmethod
    def observations(self, experiment_id: int) -> list[ObservationRecord]: ...

    @abc.abstractmethod
    def progress(self, experiment_id: int) -> Progress: ...

    def history(self, experiment_id: int) -> list[Observation]:
        """Observations as the optimizer takes them."""
        return [
            Observation(assignments=o.assignments, values=None if o.failed else o.values, failed=o.failed,
                        failure_reason=o.failure_reason)
            for o in self.observations(experiment_id)
        ]

    def pending(self, experiment_id: int) -> list[dict[str, Any]]:
        """Assignments of suggestions still open (in flight somewhere)."""
        return [s.assignments for s in self.list_suggestions(experiment_id, state="open")]

    # -- reports ------------------------------------------------------------------------------
    @abc.abstractmethod
    def frontier(self, experiment_id: int) -> list[dict[str, Any]]:
        """Non-dominated completed observations meeting every threshold."""

    @abc.abstractmethod
    def threshold_report(self, experiment_id: int) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def query(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        """Run read-only SQL against the store (tables and views are documented in the README)."""

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
    def finish_run(self, run_id: int, status: str, failure_reason: str | None = None) -> None: ...

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

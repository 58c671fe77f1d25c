"""Runs: a record of one training job's parameters, metrics, checkpoints and environment.

Used on their own for baselines (``with paretune.run("distilbert-baseline") as run: ...``), and
for every trial of an experiment, linked to its suggestion (`paretune.api.TrialRun`).
"""

from __future__ import annotations

import traceback
from types import TracebackType
from typing import Any

from paretune.failures import Failure, TrialFailure
from paretune.environment import capture_environment
from paretune.storage import DuckDBStorage, RunRecord, Storage


class Run:
    """A run being recorded; use it as a context manager so it always ends with a status.

    Leaving the block normally ends it `completed`; an exception ends it `failed` with the
    reason (its traceback goes into the run's metadata), Ctrl-C ends it `cancelled`.
    """

    def __init__(self, storage: Storage, run_id: int):
        self._storage = storage
        self.id = run_id
        self.name = storage.get_run(run_id).name
        self.failure: Failure | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The run's parameters (for a trial: its suggestion's assignments)."""
        return self.record().parameters

    def record(self) -> RunRecord:
        return self._storage.get_run(self.id)

    def log_parameter(self, name: str, value: Any) -> None:
        self._storage.log_run_parameters(self.id, {name: value})

    def log_parameters(self, parameters: dict[str, Any]) -> None:
        self._storage.log_run_parameters(self.id, parameters)

    def log_metric(self, name: str, value: float) -> None:
        self.log_metrics({name: value})

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._storage.log_run_metrics(self.id, metrics)

    def log_checkpoint(self, epoch: int, values: dict[str, float]) -> bool:
        """Record one evaluation's values; returns whether to stop (SigOpt's `should_stop`): a run
        outside an experiment is never told to."""
        self._storage.add_checkpoint(self.id, epoch, values)
        return False

    def log_metadata(self, key: str, value: Any) -> None:
        self._storage.log_run_metadata(self.id, {key: value})

    def log_failure(self, reason: str) -> None:
        """Mark the run failed (e.g. diverged) without raising; it ends as failed."""
        self.failure = Failure.from_reason(reason)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if isinstance(error, KeyboardInterrupt):
            self._cancel("cancelled: interrupted (Ctrl-C)")
            return False
        if error is not None:
            self.failure = Failure.from_exception(error)
            if not isinstance(error, TrialFailure):  # a bug: keep where it happened
                self.log_metadata("traceback", "".join(traceback.format_exception(kind, error, tb)))
        self._close()
        return self._swallows(error)

    def _cancel(self, reason: str) -> None:
        self._storage.finish_run(self.id, "cancelled", reason)

    def _close(self) -> None:
        if self.failure is None:
            self._storage.finish_run(self.id, "completed")
        else:
            self._storage.finish_run(self.id, "failed", self.failure.reason)

    def _swallows(self, error: BaseException | None) -> bool:
        """Whether leaving the block ends the exception; a plain run lets every one through."""
        return False


def run(name: str, *, db: str | None = None, storage: Storage | None = None,
        parameters: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> Run:
    """Start recording a run outside any experiment (a baseline, a one-off training job)."""
    store = storage or DuckDBStorage(db)
    environment = capture_environment()
    record = store.create_run(name, parameters=parameters, metadata=environment.metadata() | (metadata or {}),
                              git_commit=environment.git_commit, host=environment.host, device=environment.device)
    return Run(store, record.id)

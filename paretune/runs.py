"""Runs: a record of one training job's parameters, metrics, checkpoints and environment.

Used on their own for baselines (``with paretune.run("distilbert-baseline") as run: ...``), and
for every trial of an experiment, linked to its suggestion.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import traceback
from types import TracebackType
from typing import Any

from paretune.failures import TrialFailure
from storage import DuckDBStorage, RunRecord, Storage


class Run:
    """A run being recorded; use it as a context manager so it always ends with a status."""

    def __init__(
        self,
        storage: Storage,
        name: str,
        *,
        experiment_id: int | None = None,
        suggestion_id: int | None = None,
        parameters: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self._storage = storage
        self._record = storage.create_run(
            name,
            parameters=parameters,
            metadata=metadata,
            experiment_id=experiment_id,
            suggestion_id=suggestion_id,
            git_commit=git_commit(),
            host=socket.gethostname(),
            device=device_name(),
        )
        self.id = self._record.id
        self.name = name
        self.metrics: dict[str, float] = {}
        self.failure_reason: str | None = None

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
        self._storage.log_run_metrics(self.id, {name: value})
        self.metrics[name] = float(value)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._storage.log_run_metrics(self.id, metrics)
        self.metrics.update({k: float(v) for k, v in metrics.items()})

    def log_checkpoint(self, epoch: int, values: dict[str, float]) -> None:
        self._storage.add_checkpoint(self.id, epoch, values)

    def log_metadata(self, key: str, value: Any) -> None:
        self._storage.log_run_metadata(self.id, {key: value})

    def log_failure(self, reason: str) -> None:
        """Mark the run failed (e.g. diverged) without raising; it ends as failed."""
        self.failure_reason = reason

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> bool:
        if error is not None:
            self.failure_reason = _reason(error)
        if self.failure_reason is None:
            self._storage.finish_run(self.id, "completed")
        else:
            self._storage.finish_run(self.id, "failed", self.failure_reason)
        # A TrialFailure inside an experiment loop is an outcome, not an error: swallow it there.
        return isinstance(error, TrialFailure) and self._swallow_trial_failures

    _swallow_trial_failures = False


def _reason(error: BaseException) -> str:
    if isinstance(error, TrialFailure):
        return str(error)
    frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" at {frame[0].filename}:{frame[0].lineno}" if frame else ""
    return f"{type(error).__name__}: {error}{where}"


def run(name: str, *, db: str | None = None, storage: Storage | None = None, **fields: Any) -> Run:
    """Start recording a run outside any experiment (a baseline, a one-off training job)."""
    return Run(storage or DuckDBStorage(db), name, **fields)


def git_commit(cwd: str | None = None) -> str | None:
    """The commit of the working tree the run starts from, when it is a git checkout."""
    if shutil.which("git") is None:
        return None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd or os.getcwd(), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def device_name() -> str:
    """The accelerator this process would train on; never imports torch just to ask."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    if torch is None and shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != "":
        try:
            names = subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=5
            ).stdout.split("\n")
        except (OSError, subprocess.TimeoutExpired):
            names = []
        if names and names[0].strip():
            return f"cuda ({names[0].strip()})"
    return "cpu"

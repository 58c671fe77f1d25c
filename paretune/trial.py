"""A trial on a Dask worker: what an objective receives, and the messages it sends back.

An objective is any importable `module:function(assignments: dict, context: TrialContext) ->
dict[str, float]`. It runs on a Dask worker and never touches the database. `run_objective` is
the function the tuning flow submits; it talks to the flow through one `distributed.Queue` of
typed messages (`TrialStarted`, `TrialCheckpoint`, `TrialFinished`), in order, and the flow
stores what they carry.

Exactly once. Dask re-runs a task whose worker died (`allowed-failures`) and recomputes a lost
worker's finished keys, so a trial could run twice: hours of GPU time each. Two rules stop that:

- **A claim token.** The flow puts one token in the trial's claim queue before submitting it;
  `run_objective` must take it (an atomic get on the scheduler) before calling the objective. A
  second attempt, or one the flow cancelled first by taking the token itself, finds none and
  returns without running anything.
- **Results travel as messages.** The outcome is posted the moment the objective returns, and
  the flow releases the Dask future as soon as it has it, so nothing finished is left on a
  worker for Dask to recompute.

Workers load neither Prefect nor the database.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import pickle
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import distributed

from optimizer import ExperimentSpec, metric_number
from paretune.environment import capture_environment
from paretune.failures import Failure
from paretune.lifecycle import CleanMetrics, MetricsRefused, clean_metrics
from storage.records import RunEnvironment

CheckpointSink = Callable[[int, dict[str, float]], None]
Objective = Callable[[dict[str, Any], "TrialContext"], Any]
OBJECTIVE_ALLOW_LIST = "PARETUNE_OBJECTIVE_MODULES"

worker_logger = logging.getLogger(__name__)


def _discard(epoch: int, values: dict[str, float]) -> None:
    """Default sink for objectives run outside a flow (tests, notebooks)."""


@dataclass
class TrialContext:
    """Per-trial settings and the channel back to the flow.

    `settings` are the experiment's fixed, untuned knobs: `metadata.trial` of the spec (data
    paths, teacher, epochs, sequence lengths...), with, for a multitask experiment, its task's
    own overrides from `metadata.trial.task_settings` (e.g. `{cheap: {epochs: 1}}`). `task` is
    the task to run at and `task_cost` its cost (1: the full task). `artifact_dir` is a local
    folder or fsspec URL (``s3://bucket/prefix``) private to this trial.
    """

    suggestion_id: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    task_cost: float = 1.0
    artifact_dir: str | None = None
    device: str = "cpu"
    checkpoint_sink: CheckpointSink = _discard
    checkpoints: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def report_checkpoint(self, epoch: int, values: dict[str, float]) -> None:
        """Record one epoch's values; values that are not finite numbers are refused here, at the source."""
        clean = {str(name): metric_number(f"checkpoint value {name} at epoch {epoch}", value)
                 for name, value in values.items()}
        self.checkpoints.append((int(epoch), clean))
        self.checkpoint_sink(int(epoch), clean)


# -- what the flow sends, and what comes back -------------------------------------------------------
@dataclass(frozen=True)
class TrialRequest:
    """Everything a worker needs to run one suggestion (picklable, no connections)."""

    suggestion_id: int
    assignments: dict[str, Any]
    objective: str
    spec: ExperimentSpec
    channel: str
    claim: str
    settings: dict[str, Any] = field(default_factory=dict)
    task: str | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """Clean metrics, or the failure that stands for them; `duration_s` times the objective alone."""

    metrics: CleanMetrics | None
    failure: Failure | None
    duration_s: float | None
    traceback: str | None = None

    def __post_init__(self) -> None:
        if (self.metrics is None) == (self.failure is None):
            raise ValueError("an outcome has either metrics or a failure")
        if self.duration_s is not None and not math.isfinite(self.duration_s):
            object.__setattr__(self, "duration_s", None)


@dataclass(frozen=True)
class TrialStarted:
    suggestion_id: int
    worker: str
    environment: RunEnvironment


@dataclass(frozen=True)
class TrialCheckpoint:
    suggestion_id: int
    epoch: int
    values: dict[str, float]


@dataclass(frozen=True)
class TrialFinished:
    suggestion_id: int
    outcome: TrialOutcome


TrialMessage = TrialStarted | TrialCheckpoint | TrialFinished


class FlowUnreachable(BaseException):
    """The flow can no longer be told anything (it stopped, or this worker is closing): the trial
    is abandoned. A BaseException, like KeyboardInterrupt, so an objective's `except Exception`
    does not swallow it."""


class MessageChannel:
    """A `distributed.Queue` of typed messages between workers and the flow, in order.

    Messages travel pickled: Dask's own serialization takes plain data only, and would log a
    fallback to pickle for every dataclass.
    """

    def __init__(self, name: str, client: distributed.Client):
        self.name = name
        self._queue = distributed.Queue(name, client=client)

    def put(self, message: object) -> None:
        try:
            self._queue.put(pickle.dumps(message))
        except Exception as error:
            raise FlowUnreachable(f"cannot reach the flow on {self.name}: {type(error).__name__}: {error}") from None

    def get(self, timeout_s: float | None) -> object:
        """The next message; TimeoutError when none came within `timeout_s` (None: wait for one)."""
        return pickle.loads(self._queue.get(timeout=timeout_s))

    def get_waiting(self) -> list[object]:
        """Every message waiting now, without blocking."""
        return [pickle.loads(data) for data in self._queue.get(batch=True)]


# -- the objective ------------------------------------------------------------------------------------
class ObjectiveImportError(ImportError):
    """The objective path in the spec does not name an importable, allowed function."""


def check_objective_allowed(path: str) -> None:
    """`metadata.objective` runs code, like an entry point: a deployment can restrict which.

    `$PARETUNE_OBJECTIVE_MODULES` (comma-separated module names) allows those modules and
    their submodules only.
    """
    allowed = [name.strip() for name in os.environ.get(OBJECTIVE_ALLOW_LIST, "").split(",") if name.strip()]
    module = path.partition(":")[0]
    if allowed and not any(module == name or module.startswith(name + ".") for name in allowed):
        raise ObjectiveImportError(
            f"metadata.objective {path!r}: module {module!r} is not allowed here; "
            f"${OBJECTIVE_ALLOW_LIST} allows {', '.join(allowed)} (add it there to run it)"
        )


def load_objective(path: str) -> Objective:
    """Import `module:function`; the error names the spec field to fix."""
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise ObjectiveImportError(f"metadata.objective must look like 'package.module:function', got {path!r}")
    check_objective_allowed(path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ObjectiveImportError(
            f"metadata.objective {path!r}: cannot import {module_name!r} ({error}); "
            "install it on the workers or run from the folder that holds it"
        ) from None
    objective = getattr(module, function_name, None)
    if not callable(objective):
        raise ObjectiveImportError(f"metadata.objective {path!r}: {module_name} has no function {function_name!r}")
    return objective


def call_objective(request: TrialRequest, context: TrialContext) -> TrialOutcome:
    """Call the objective once; whatever it does becomes an outcome (a bug included, with its
    traceback), except the death of the process."""
    started = time.perf_counter()
    try:
        objective = load_objective(request.objective)
        metrics = clean_metrics(request.spec, objective(dict(request.assignments), context))
    except MetricsRefused as refused:
        return TrialOutcome(None, refused.failure, time.perf_counter() - started)
    except Exception as error:
        details = traceback.format_exc()
        worker_logger.error("trial %s raised:\n%s", request.suggestion_id, details)
        return TrialOutcome(None, Failure.from_exception(error), time.perf_counter() - started, details)
    return TrialOutcome(metrics, None, time.perf_counter() - started)


def task_settings(settings: dict[str, Any], task: str | None) -> dict[str, Any]:
    """`metadata.trial` as a trial at `task` sees it: the task's overrides from `task_settings`
    applied, the overrides table itself left out."""
    overrides = dict(settings.get("task_settings") or {})
    base = {key: value for key, value in settings.items() if key != "task_settings"}
    return base | dict(overrides.get(task) or {}) if task is not None else base


def run_objective(request: TrialRequest) -> bool:
    """On a Dask worker: run the trial if this is its one attempt; return whether it ran.

    The outcome goes to the flow as a `TrialFinished` message, not as this task's result.
    """
    client = distributed.get_client()
    if not distributed.Queue(request.claim, client=client).get(batch=True):
        return False  # a re-run after a lost worker, or cancelled before it started: never run twice
    channel = MessageChannel(request.channel, client)
    worker = distributed.get_worker().address

    def stream_checkpoint(epoch: int, values: dict[str, float]) -> None:
        channel.put(TrialCheckpoint(request.suggestion_id, epoch, values))

    context = TrialContext(suggestion_id=request.suggestion_id, settings=task_settings(request.settings, request.task),
                           task=request.task, task_cost=request.spec.task_cost(request.task),
                           checkpoint_sink=stream_checkpoint)
    try:
        channel.put(TrialStarted(request.suggestion_id, worker, capture_environment()))
        channel.put(TrialFinished(request.suggestion_id, call_objective(request, context)))
    except FlowUnreachable as gone:
        worker_logger.warning("trial %s abandoned: %s", request.suggestion_id, gone)
    return True

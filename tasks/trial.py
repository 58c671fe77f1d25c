"""One trial: the objective call on a Dask worker, and the Prefect task run that records it.

Two halves, so Dask workers never load Prefect. `run_objective` is a plain function the
flow submits with the Dask client: it imports the objective, calls it, and turns what happens
into a `TrialOutcome`; it talks to the flow only through a `distributed.Queue` named in its
request (a "started" message when the objective begins, one "checkpoint" message per epoch).
`run_trial` is the Prefect task, run in a thread of the flow process: it waits for the same
Dask future the flow loop waits for, and ends in the state the UI should show (Completed,
Failed with the reason, Failed "TimedOut", Crashed for a lost worker) with the outcome as its
data. The flow submits the objective itself (`DaskTrial`), not the task: a task run's start
costs API calls (tag concurrency slots), which must not delay the trial.
"""

from __future__ import annotations

import importlib
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import distributed
from distributed import KilledWorker
from distributed.comm.core import CommClosedError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Crashed, Failed, State

from optimizer import ExperimentSpec, ObservationError, validate_values
from paretune.failures import Diverged, TrialFailure
from paretune.trial import TrialContext

Objective = Callable[[dict[str, Any], TrialContext], dict[str, float]]

# How a trial's Dask future ends when the worker running it, not the trial, failed.
WORKER_LOST: tuple[type[BaseException], ...] = (KilledWorker, CommClosedError, ConnectionError)

worker_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialRequest:
    """Everything a worker needs to run one suggestion (picklable, no connections)."""

    suggestion_id: int
    assignments: dict[str, Any]
    objective: str
    spec: ExperimentSpec
    settings: dict[str, Any] = field(default_factory=dict)
    channel: str | None = None


@dataclass(frozen=True)
class TrialOutcome:
    """Metric values, or the reason there are none; `duration_s` times the objective alone."""

    suggestion_id: int
    values: dict[str, float] | None
    failure_reason: str | None
    duration_s: float | None
    worker: str | None
    checkpoints: list[tuple[int, dict[str, float]]]
    traceback: str | None = None
    worker_lost: bool = False
    unobserved: dict[str, float] = field(default_factory=dict)  # metrics beyond the spec: kept on the run

    @property
    def failed(self) -> bool:
        return self.failure_reason is not None


class ObjectiveImportError(ImportError):
    """The objective path in the spec does not name an importable function."""


def load_objective(path: str) -> Objective:
    """Import `module:function`; the error names the spec field to fix."""
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise ObjectiveImportError(
            f"metadata.objective must look like 'package.module:function', got {path!r}"
        )
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


def check_metrics(spec: ExperimentSpec, values: Any) -> tuple[dict[str, float], dict[str, float]]:
    """The objective's return value as clean floats, split into the experiment's metrics (the
    observation) and any others it reports (kept on the trial's run: an objective such as
    `bert.distill:run_trial` reports more than one experiment tracks). NaN/inf is a divergence;
    a non-number, or a missing optimized/constraint metric, is a bug in the objective."""
    if not isinstance(values, dict):
        raise TypeError(f"the objective must return a dict of metric name to number, got {type(values).__name__}")
    clean: dict[str, float] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"the objective returned {name}={value!r}: metric values must be numbers")
        if not math.isfinite(float(value)):
            raise Diverged(f"metric {name} is {value}")
        clean[str(name)] = float(value)
    declared = {metric.name for metric in spec.metrics}
    try:
        observed = validate_values(spec, {name: value for name, value in clean.items() if name in declared})
    except ObservationError as error:
        raise TypeError(f"the objective returned unusable metrics: {error}") from None
    return observed, {name: value for name, value in clean.items() if name not in declared}


def failure_reason(error: BaseException) -> str:
    """`kind: detail`, the form reports group failures by."""
    if isinstance(error, TrialFailure):
        return str(error)
    return f"error: {type(error).__name__}: {error}"


def short_assignments(assignments: dict[str, Any]) -> str:
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in assignments.items())


def run_objective(request: TrialRequest) -> TrialOutcome:
    """On a Dask worker: call the objective once; a failure of the trial itself becomes its outcome."""
    worker = distributed.get_worker().address
    channel = None if request.channel is None else distributed.Queue(request.channel, client=distributed.get_client())

    def stream_checkpoint(epoch: int, values: dict[str, float]) -> None:
        if channel is not None:
            channel.put(("checkpoint", request.suggestion_id, epoch, values))

    context = TrialContext(suggestion_id=request.suggestion_id, settings=dict(request.settings),
                           checkpoint_sink=stream_checkpoint)
    if channel is not None:
        channel.put(("started", request.suggestion_id, worker))
    started = time.perf_counter()
    try:
        objective = load_objective(request.objective)
        values, unobserved = check_metrics(request.spec, objective(dict(request.assignments), context))
    except WORKER_LOST:
        raise
    except Exception as error:
        details = None if isinstance(error, TrialFailure) else traceback.format_exc()
        if details:
            worker_logger.error("trial %s raised:\n%s", request.suggestion_id, details)
        return TrialOutcome(request.suggestion_id, None, failure_reason(error), time.perf_counter() - started,
                            worker, context.checkpoints, details)
    return TrialOutcome(request.suggestion_id, values, None, time.perf_counter() - started, worker,
                        context.checkpoints, unobserved=unobserved)


class DaskTrial:
    """One trial's Dask future, shared by the flow loop (which records its outcome and may time
    it out) and the task thread (which ends the Prefect task run in the matching state).

    A plain class, not a dataclass: Prefect rebuilds dataclass parameters, and both sides must
    hold this same object.
    """

    def __init__(self, client: distributed.Client, request: TrialRequest):
        self.request = request
        self.future = client.submit(run_objective, request, pure=False, key=f"trial-{request.suggestion_id}")
        self.timeout_reason: str | None = None

    def time_out(self, reason: str) -> None:
        """Cancel the objective's future; the trial ends failed with `reason`."""
        self.timeout_reason = reason
        self.future.cancel(force=True)

    def outcome(self) -> TrialOutcome:
        """Wait for the objective; a cancelled future or a dead worker gives an outcome too."""
        suggestion_id = self.request.suggestion_id
        try:
            return self.future.result()
        except distributed.CancelledError as error:
            if self.timeout_reason is not None:
                return TrialOutcome(suggestion_id, None, self.timeout_reason, None, None, [])
            lost = error
        except WORKER_LOST as error:
            lost = error
        except Exception as error:
            return TrialOutcome(suggestion_id, None, failure_reason(error), None, None, [])
        return TrialOutcome(suggestion_id, None, f"worker lost: {type(lost).__name__}: {lost}", None, None, [],
                            worker_lost=True)


def trial_run_name() -> str:
    """The task run's name in the UI: suggestion id and assignments."""
    from prefect.runtime import task_run

    request: TrialRequest = task_run.parameters["trial"].request
    return f"trial-{request.suggestion_id} {short_assignments(request.assignments)}"


@task(name="run-trial", task_run_name=trial_run_name, cache_policy=NO_CACHE)
def run_trial(trial: DaskTrial) -> TrialOutcome | State:
    """Wait for the trial's objective on Dask and end in the state that tells the UI how it went."""
    outcome = trial.outcome()
    logger = get_run_logger()
    if not outcome.failed:
        logger.info("trial %s on %s: %s in %.2f s", outcome.suggestion_id, outcome.worker, outcome.values,
                    outcome.duration_s)
        return outcome
    if outcome.traceback:
        logger.error("trial %s raised on %s:\n%s", outcome.suggestion_id, outcome.worker, outcome.traceback)
    if outcome.worker_lost:
        return Crashed(message=outcome.failure_reason, data=outcome)
    if trial.timeout_reason is not None:
        return Failed(name="TimedOut", message=outcome.failure_reason, data=outcome)
    return Failed(message=outcome.failure_reason, data=outcome)

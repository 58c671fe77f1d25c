"""Run one trial on a Dask worker: import the objective, call it, turn what happens into an outcome.

A trial never touches the database. It talks to the flow through a `distributed.Queue` named
in its request: a "started" message when the objective begins (the flow starts the trial's
timeout clock and records the worker) and one "checkpoint" message per epoch the objective
reports. Its return value is a `TrialOutcome`; a failed trial returns a Prefect `Failed`
state carrying the outcome, so the UI shows it red while the flow still gets the reason.
"""

from __future__ import annotations

import importlib
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import distributed
from distributed.comm.core import CommClosedError
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.states import Failed

from optimizer import ExperimentSpec, ObservationError, validate_values
from paretune.failures import Diverged, TrialFailure
from paretune.trial import TrialContext

Objective = Callable[[dict[str, Any], TrialContext], dict[str, float]]

# Faults of the machinery around a trial, not of its configuration: worth another attempt.
INFRASTRUCTURE_FAULTS: tuple[type[BaseException], ...] = (ConnectionError, CommClosedError)


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
    duration_s: float
    worker: str | None
    checkpoints: list[tuple[int, dict[str, float]]]

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


def check_metrics(spec: ExperimentSpec, values: Any) -> dict[str, float]:
    """The objective's return value as clean floats; NaN/inf is a divergence, anything else wrong a bug."""
    if not isinstance(values, dict):
        raise TypeError(f"the objective must return a dict of metric name to number, got {type(values).__name__}")
    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(float(value)):
            raise Diverged(f"metric {name} is {value}")
    try:
        return validate_values(spec, values)
    except ObservationError as error:
        raise TypeError(f"the objective returned unusable metrics: {error}") from None


def failure_reason(error: BaseException) -> str:
    """`kind: detail`, the form reports group failures by."""
    if isinstance(error, TrialFailure):
        return str(error)
    return f"error: {type(error).__name__}: {error}"


def retry_infrastructure_faults(task: Any, task_run: TaskRun, state: State) -> bool:
    """Prefect's retry condition: retry connection faults, never a trial's own failure."""
    try:
        state.result()
    except INFRASTRUCTURE_FAULTS:
        return True
    except BaseException:
        return False
    return False


def _worker_address() -> str | None:
    try:
        return distributed.get_worker().address
    except ValueError:
        return None


def _channel(request: TrialRequest) -> distributed.Queue | None:
    if request.channel is None:
        return None
    return distributed.Queue(request.channel, client=distributed.get_client())


def trial_run_name() -> str:
    """The task run's name in the UI: suggestion id and assignments."""
    from prefect.runtime import task_run

    request: TrialRequest = task_run.parameters["request"]
    return f"trial-{request.suggestion_id} {short_assignments(request.assignments)}"


def short_assignments(assignments: dict[str, Any]) -> str:
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in assignments.items())


@task(
    name="run-trial",
    task_run_name=trial_run_name,
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_infrastructure_faults,
)
def run_trial(request: TrialRequest) -> TrialOutcome | State:
    """Call the objective once; a deterministic failure becomes a Failed state with its reason."""
    logger = get_run_logger()
    worker = _worker_address()
    channel = _channel(request)

    def stream_checkpoint(epoch: int, values: dict[str, float]) -> None:
        if channel is not None:
            channel.put(("checkpoint", request.suggestion_id, epoch, values))

    context = TrialContext(
        suggestion_id=request.suggestion_id,
        settings=dict(request.settings),
        checkpoint_sink=stream_checkpoint,
    )
    if channel is not None:
        channel.put(("started", request.suggestion_id, worker))
    started = time.perf_counter()
    try:
        objective = load_objective(request.objective)
        values = check_metrics(request.spec, objective(dict(request.assignments), context))
    except INFRASTRUCTURE_FAULTS:
        raise
    except Exception as error:
        reason = failure_reason(error)
        if not isinstance(error, TrialFailure):
            logger.error("trial %s raised:\n%s", request.suggestion_id, traceback.format_exc())
        outcome = TrialOutcome(request.suggestion_id, None, reason, time.perf_counter() - started, worker,
                               context.checkpoints)
        return Failed(message=reason, data=outcome)
    duration = time.perf_counter() - started
    logger.info("trial %s: %s in %.2f s", request.suggestion_id, values, duration)
    return TrialOutcome(request.suggestion_id, values, None, duration, worker, context.checkpoints)

"""A trial as an objective sees it, and the messages a worker sends back about it.

An objective is any importable `module:function(assignments: dict, context: TrialContext) ->
dict[str, float]`. It runs on a Dask worker and never touches the database: the worker side
(`paretune.worker`) posts typed messages (`TrialStarted`, `TrialCheckpoint`, `TrialFinished`)
to the flow, which stores what they carry and answers each checkpoint (`CheckpointAnswer`:
stop or go on). This module loads neither Dask nor Prefect, so
`import paretune` stays light.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from paretune.optimizer import ExperimentSpec, metric_number
from paretune.failures import Failure, TrialFailure
from paretune.lifecycle import CleanMetrics, MetricsRefused, clean_metrics
from paretune.storage.records import RunEnvironment

CheckpointSink = Callable[[int, dict[str, float]], bool]  # returns: should the trial stop
Objective = Callable[[dict[str, Any], "TrialContext"], Any]
OBJECTIVE_ALLOW_LIST = "PARETUNE_OBJECTIVE_MODULES"

worker_logger = logging.getLogger(__name__)


def _discard(epoch: int, values: dict[str, float]) -> bool:
    """Default sink for objectives run outside a flow (tests, notebooks): never stop."""
    return False


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

    def report_checkpoint(self, epoch: int, values: dict[str, float]) -> bool:
        """Record one evaluation's values and return True when the trial should stop (SigOpt's
        `should_stop`): the objective then returns its latest values. Values that are not finite
        numbers are refused here, at the source."""
        clean = {str(name): metric_number(f"checkpoint value {name} at epoch {epoch}", value)
                 for name, value in values.items()}
        self.checkpoints.append((int(epoch), clean))
        return bool(self.checkpoint_sink(int(epoch), clean))


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
    answers: str | None = None  # the queue this trial's checkpoint answers come on
    flow_client: str | None = None  # the flow's Dask client: gone, no answer will come


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
    sequence: int = 0  # the objective's count of checkpoints so far (1 for its first)


@dataclass(frozen=True)
class CheckpointAnswer:
    """The flow's answer to checkpoint `sequence` of a trial (SigOpt's should_stop, stopping_reasons)."""

    suggestion_id: int
    sequence: int
    should_stop: bool
    reasons: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialFinished:
    suggestion_id: int
    outcome: TrialOutcome


TrialMessage = TrialStarted | TrialCheckpoint | TrialFinished


# -- the objective ------------------------------------------------------------------------------------
class ObjectiveImportError(ImportError):
    """The objective path in the spec does not name an importable, allowed function."""


# Before the one import namespace, paretune's folders were top-level packages; definitions stored
# then name objectives such as "bert.distill:run_trial".
PARETUNE_FOLDERS = ("bert", "flows", "optimizer", "storage", "tasks")


def canonical_objective(path: str) -> str:
    """`bert.distill:run_trial` (an older definition's spelling) as `paretune.bert.distill:run_trial`."""
    if path.partition(".")[0] in PARETUNE_FOLDERS:
        return f"paretune.{path}"
    return path


def check_objective_allowed(path: str) -> None:
    """`metadata.objective` runs code, like an entry point: a deployment can restrict which.

    `$PARETUNE_OBJECTIVE_MODULES` (comma-separated module names) allows those modules and
    their submodules only.
    """
    allowed = [canonical_objective(name.strip())
               for name in os.environ.get(OBJECTIVE_ALLOW_LIST, "").split(",") if name.strip()]
    module = canonical_objective(path).partition(":")[0]
    if allowed and not any(module == name or module.startswith(name + ".") for name in allowed):
        raise ObjectiveImportError(
            f"metadata.objective {path!r}: module {module!r} is not allowed here; "
            f"${OBJECTIVE_ALLOW_LIST} allows {', '.join(allowed)} (add it there to run it)"
        )


def load_objective(path: str) -> Objective:
    """Import `module:function`; the error names the spec field to fix."""
    path = canonical_objective(path)
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
    except TrialFailure as expected:  # information for the search, not a bug: the flow logs it in one line
        worker_logger.debug("trial %s failed: %s", request.suggestion_id, expected, exc_info=True)
        return TrialOutcome(None, Failure.from_exception(expected), time.perf_counter() - started)
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

"""A trial's Prefect task run: the UI's record of one trial.

The tuning flow's scheduler runs the trial (on Dask) and closes it (in the store); this task,
run in a thread of the flow process, only waits for that close and ends in the state that tells
the UI how it went: Completed, Failed with the reason, Failed "TimedOut", Crashed for a lost
worker, Cancelled. It also leaves a table artifact on the task run with the assignments, the
metric values or the failure, and the duration, so a trial reads without opening logs.
The objective is not submitted from inside the task: a task run's start costs API calls (tag
concurrency slots), which must never delay a trial.

Trials are named by their number within the experiment (`trial_numbers` view: 1, 2, 3...), the
number every report shows; the global suggestion id stays in the `suggestion:<id>` tag. An
expected failure (out of memory, divergence, an invalid configuration: the search learns from
it) reads as one WARNING line with its reason; only an unexpected error logs its traceback.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from prefect.states import Cancelled, Crashed, Failed, State

from paretune.failures import Failure, FailureKind
from paretune.storage.report import format_number

TASK_NAME = "run-trial"


@dataclass(frozen=True)
class ClosedTrial:
    """A trial as the store closed it (the scheduler's message to the UI and the terminal)."""

    suggestion_id: int
    trial: int  # its number within the experiment
    assignments: dict[str, Any]
    status: str  # completed | stopped | failed | cancelled
    values: dict[str, float] | None = None
    failure: Failure | None = None
    duration_s: float | None = None
    worker: str | None = None
    traceback: str | None = None


class TrialTicket:
    """What the task waits on: the scheduler resolves it when the trial is closed.

    A plain class, not a dataclass: Prefect rebuilds dataclass parameters, and both sides must
    hold this same object.
    """

    def __init__(self, suggestion_id: int, trial: int, assignments: dict[str, Any]):
        self.suggestion_id = suggestion_id
        self.trial = trial
        self.assignments = assignments
        self.closed: Future[ClosedTrial] = Future()


def short_assignments(assignments: dict[str, Any]) -> str:
    """`n_layers=2 learning_rate=2.844e-4 num_parameters=14,380,290`: numbers as every report writes them."""
    return " ".join(f"{name}={format_number(value)}" for name, value in assignments.items())


def trial_run_name() -> str:
    """The task run's name in the UI: trial number and assignments."""
    ticket: TrialTicket = task_run.parameters["ticket"]
    return f"trial-{ticket.trial} {short_assignments(ticket.assignments)}"


def result_rows(closed: ClosedTrial) -> list[dict[str, Any]]:
    """The trial as a two-column table: assignments, then values or the failure, then timing."""
    rows: list[dict[str, Any]] = [{"field": "trial", "value": closed.trial}]
    rows += [{"field": f"parameter {name}", "value": value} for name, value in closed.assignments.items()]
    if closed.values is not None:
        rows += [{"field": f"metric {name}", "value": value} for name, value in closed.values.items()]
    rows.append({"field": "status", "value": closed.status})
    if closed.failure is not None:
        rows.append({"field": "reason", "value": closed.failure.reason})
    rows.append({"field": "duration_s", "value": None if closed.duration_s is None else round(closed.duration_s, 3)})
    rows.append({"field": "worker", "value": closed.worker or ""})
    return rows


# Task runs that end Failed for an expected reason, until Prefect logs their end.
_expected_failures: set[str] = set()


class ExpectedFailureAsWarning(logging.Filter):
    """Prefect logs a task run that ends Failed twice at ERROR: "Task run failed with state ..."
    (with an empty traceback) and "Finished in state Failed('...')". A trial's expected failure
    is information for the search: the first goes, the second (it holds the reason) is a WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        task_run = str(getattr(record, "task_run_id", ""))
        if record.levelno < logging.ERROR or task_run not in _expected_failures:
            return True
        message = record.getMessage()
        if message.startswith("Task run failed with state"):
            return False
        if message.startswith("Finished in state"):
            _expected_failures.discard(task_run)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("prefect.task_runs").addFilter(ExpectedFailureAsWarning())


@task(name=TASK_NAME, task_run_name=trial_run_name, cache_policy=NO_CACHE)
def run_trial(ticket: TrialTicket) -> ClosedTrial | State:
    """Wait for the scheduler to close the trial and end in the state that tells the UI how it went."""
    closed = ticket.closed.result()
    create_table_artifact(result_rows(closed), description=f"Trial {closed.trial}: {closed.status}")
    logger = get_run_logger()
    if closed.status in ("completed", "stopped"):  # stopped early: its latest values, a result like any
        logger.info("trial %s on %s: %s %s in %s s", closed.trial, closed.worker, closed.status,
                    short_assignments(closed.values or {}),
                    None if closed.duration_s is None else f"{closed.duration_s:.2f}")
        return closed
    if closed.traceback:
        logger.error("trial %s raised on %s:\n%s", closed.trial, closed.worker, closed.traceback)
    message = closed.failure.reason if closed.failure else closed.status
    if closed.status == "cancelled":
        return Cancelled(message=message, data=closed)
    assert closed.failure is not None
    if closed.failure.kind is FailureKind.WORKER_LOST:
        return Crashed(message=message, data=closed)
    if closed.failure.kind is FailureKind.TIMEOUT:
        return Failed(name="TimedOut", message=message, data=closed)
    if closed.failure.expected:
        _expected_failures.add(str(task_run.id))
    return Failed(message=message, data=closed)

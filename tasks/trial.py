"""A trial's Prefect task run: the UI's record of one trial.

The tuning flow's scheduler runs the trial (on Dask) and closes it (in the store); this task,
run in a thread of the flow process, only waits for that close and ends in the state that tells
the UI how it went: Completed, Failed with the reason, Failed "TimedOut", Crashed for a lost
worker, Cancelled. It also leaves a table artifact on the task run with the assignments, the
metric values or the failure, and the duration, so a trial reads without opening logs.
The objective is not submitted from inside the task: a task run's start costs API calls (tag
concurrency slots), which must never delay a trial.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Crashed, Failed, State

from paretune.failures import Failure, FailureKind


@dataclass(frozen=True)
class ClosedTrial:
    """A trial as the store closed it (the scheduler's message to the UI and the terminal)."""

    suggestion_id: int
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

    def __init__(self, suggestion_id: int, assignments: dict[str, Any]):
        self.suggestion_id = suggestion_id
        self.assignments = assignments
        self.closed: Future[ClosedTrial] = Future()


def short_assignments(assignments: dict[str, Any]) -> str:
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in assignments.items())


def trial_run_name() -> str:
    """The task run's name in the UI: suggestion id and assignments."""
    from prefect.runtime import task_run

    ticket: TrialTicket = task_run.parameters["ticket"]
    return f"trial-{ticket.suggestion_id} {short_assignments(ticket.assignments)}"


def result_rows(closed: ClosedTrial) -> list[dict[str, Any]]:
    """The trial as a two-column table: assignments, then values or the failure, then timing."""
    rows: list[dict[str, Any]] = [{"field": "suggestion", "value": closed.suggestion_id}]
    rows += [{"field": f"parameter {name}", "value": value} for name, value in closed.assignments.items()]
    if closed.values is not None:
        rows += [{"field": f"metric {name}", "value": value} for name, value in closed.values.items()]
    rows.append({"field": "status", "value": closed.status})
    if closed.failure is not None:
        rows.append({"field": "reason", "value": closed.failure.reason})
    rows.append({"field": "duration_s", "value": None if closed.duration_s is None else round(closed.duration_s, 3)})
    rows.append({"field": "worker", "value": closed.worker or ""})
    return rows


@task(name="run-trial", task_run_name=trial_run_name, cache_policy=NO_CACHE)
def run_trial(ticket: TrialTicket) -> ClosedTrial | State:
    """Wait for the scheduler to close the trial and end in the state that tells the UI how it went."""
    closed = ticket.closed.result()
    create_table_artifact(result_rows(closed), description=f"Trial {closed.suggestion_id}: {closed.status}")
    logger = get_run_logger()
    if closed.status in ("completed", "stopped"):  # stopped early: its latest values, a result like any
        logger.info("trial %s on %s: %s in %s s", closed.suggestion_id, closed.worker, closed.values,
                    None if closed.duration_s is None else f"{closed.duration_s:.2f}")
        return closed
    if closed.traceback:
        logger.error("trial %s raised on %s:\n%s", closed.suggestion_id, closed.worker, closed.traceback)
    message = closed.failure.reason if closed.failure else closed.status
    if closed.status == "cancelled":
        return Cancelled(message=message, data=closed)
    assert closed.failure is not None
    if closed.failure.kind is FailureKind.WORKER_LOST:
        return Crashed(message=message, data=closed)
    if closed.failure.kind is FailureKind.TIMEOUT:
        return Failed(name="TimedOut", message=message, data=closed)
    return Failed(message=message, data=closed)

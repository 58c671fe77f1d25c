"""The sweep as people watch it: a terminal bar with a line per trial, the Prefect progress
artifact, and the live report (frontier, thresholds, summary, picture) on the tune flow run.

The scheduler hands it each `ClosedTrial`; nothing here is on the scheduler's path: the
Prefect calls run in one background thread, and the live report is refreshed at most every
`REPORT_EVERY_S` seconds or every `report_every_trials` trials, plus once at the end.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import queue
import threading
import time
from typing import Callable

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paretune.tasks.trial import ClosedTrial, short_assignments

REPORT_EVERY_S = 30.0
logger = logging.getLogger(__name__)


class ProgressView:
    def __init__(self, name: str, budget: int, observed: float, *, live_report: Callable[[], None] | None,
                 report_every_trials: int):
        self.name = name
        self.budget = budget
        self.observed = observed
        self.live_report = live_report
        self.report_every_trials = report_every_trials
        self.console = Console(stderr=True)
        self._bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=self.console)
        self._task = self._bar.add_task("observations", total=budget, completed=observed)
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        # Prefect's run context lives in context variables: the background thread needs a copy.
        context = contextvars.copy_context()
        self._worker = threading.Thread(target=context.run, args=(self._work,), name="paretune-progress", daemon=True)
        self._artifact_id = None
        self._last_report = time.monotonic()
        self._closed_since_report = 0
        self.final_report = True  # refresh the report once more at the end (a cancelled run skips it)

    def __enter__(self) -> ProgressView:
        self._bar.start()
        self._worker.start()
        self._jobs.put(functools.partial(self._create_artifact, self._percent_done()))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live_report is not None and self.final_report:
            self._jobs.put(self.live_report)
        self._jobs.put(None)
        self._worker.join()
        self._bar.stop()

    def trial_closed(self, closed: ClosedTrial, *, spent: float) -> None:
        """Show a closed trial and what it `spent` of the budget: its task's cost when it became an
        observation (1 without tasks), nothing when it was cancelled."""
        self.observed += spent
        self._bar.update(self._task, completed=self.observed)
        self.console.print(self._line(closed), highlight=False, soft_wrap=True)
        self._jobs.put(functools.partial(self._update_artifact, self._percent_done()))
        self._closed_since_report += 1
        due = (time.monotonic() - self._last_report >= REPORT_EVERY_S
               or self._closed_since_report >= self.report_every_trials)
        if due and self.live_report is not None:
            self._last_report, self._closed_since_report = time.monotonic(), 0
            self._jobs.put(self.live_report)

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    def _line(self, closed: ClosedTrial) -> str:
        took = "" if closed.duration_s is None else f" ({closed.duration_s:.2f} s)"
        if closed.status in ("completed", "stopped"):
            mark = "[green]ok[/green]" if closed.status == "completed" else "[yellow]stopped[/yellow]"
            result = f"{mark} " + short_assignments(closed.values or {})
        else:
            reason = closed.failure.reason if closed.failure else closed.status
            result = f"[red]{closed.status}[/red] {reason}"
        return f"trial {closed.suggestion_id:>4} {short_assignments(closed.assignments)} -> {result}{took}"

    def _percent_done(self) -> float:
        return round(100.0 * min(self.observed, self.budget) / self.budget, 1)

    def _create_artifact(self, percent: float) -> None:
        self._artifact_id = create_progress_artifact(
            progress=percent, description=f"{self.name}: observations out of a budget of {self.budget}")

    def _update_artifact(self, percent: float) -> None:
        if self._artifact_id is not None:
            update_progress_artifact(self._artifact_id, progress=percent)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as error:  # a report must never stop a sweep
                logger.warning("could not update the Prefect UI: %s", error)

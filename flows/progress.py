"""The sweep as people watch it: a terminal bar with a line per trial, the Prefect progress
artifact, and the live report (frontier, thresholds, summary, picture) on the tune flow run.

The terminal shows the sweep's bar (trials done of the budget, time left) and one row per
running trial (its number, worker, latest checkpoint, and time left as the median of the
trials finished so far suggests); the Prefect progress artifact's description says the same
in words. Trials are named by their number within the experiment everywhere.

The scheduler hands it each `ClosedTrial`; nothing here is on the scheduler's path: the
Prefect calls run in one background thread, and the live report is refreshed at most every
`REPORT_EVERY_S` seconds or every `report_every_trials` trials, plus once at the end.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import queue
import statistics
import threading
import time
from typing import Callable

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task, TaskID
from rich.text import Text

from paretune.tasks.trial import ClosedTrial, short_assignments
from paretune.terminal import progress_columns

REPORT_EVERY_S = 30.0
logger = logging.getLogger(__name__)


def duration_text(seconds: float) -> str:
    """`45 s`, `3 min`, `1 h 20 min`: how long, as a person says it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


class TrialTimeLeft(ProgressColumn):
    """A running trial's time left: the median duration of finished trials minus its time so far."""

    def __init__(self, view: ProgressView):
        super().__init__()
        self.view = view

    def render(self, task: Task) -> Text:
        typical = self.view.typical_duration_s()
        if not task.fields.get("trial") or typical is None or task.elapsed is None:
            return Text("")
        left = typical - task.elapsed
        return Text(f"about {duration_text(left)} left" if left > 0 else "longer than most", style="progress.remaining")


class ProgressView:
    def __init__(self, name: str, budget: int, observed: float, *, live_report: Callable[[], None] | None,
                 report_every_trials: int):
        self.name = name
        self.budget = budget
        self.observed = observed
        self.live_report = live_report
        self.report_every_trials = report_every_trials
        self.console = Console(stderr=True)
        self._bar = Progress(*progress_columns(), TrialTimeLeft(self), console=self.console)
        self._task = self._bar.add_task(f"[bold]{name}[/bold]: trials", total=budget, completed=observed)
        self._running: dict[int, tuple[TaskID, str]] = {}  # trial number -> its row in the bar, its label
        self._durations: list[float] = []
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

    def trial_started(self, trial: int, worker: str) -> None:
        """A row for the trial while it runs: its number, worker and time left."""
        label = f"  trial {trial} on {worker.rsplit(':', 1)[-1]}"
        self._running[trial] = (self._bar.add_task(label, total=None, trial=trial), label)

    def trial_checkpoint(self, trial: int, epoch: int) -> None:
        if trial in self._running:
            row, label = self._running[trial]
            self._bar.update(row, description=f"{label} · checkpoint {epoch}")

    def typical_duration_s(self) -> float | None:
        return statistics.median(self._durations) if self._durations else None

    def trial_closed(self, closed: ClosedTrial, *, spent: float) -> None:
        """Show a closed trial and what it `spent` of the budget: its task's cost when it became an
        observation (1 without tasks), nothing when it was cancelled."""
        self.observed += spent
        row, _ = self._running.pop(closed.trial, (None, ""))
        if row is not None:
            self._bar.remove_task(row)
        if closed.duration_s is not None and closed.status == "completed":
            self._durations.append(closed.duration_s)
        self._bar.update(self._task, completed=self.observed)
        self.console.print(self._line(closed), highlight=False, soft_wrap=True)
        self._jobs.put(functools.partial(self._update_artifact, self._percent_done(), self._description()))
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
        return f"trial {closed.trial:>4} {short_assignments(closed.assignments)} -> {result}{took}"

    def _percent_done(self) -> float:
        return round(100.0 * min(self.observed, self.budget) / self.budget, 1)

    def _description(self) -> str:
        """The artifact's words: `NAME: 5 of 8 trials done, 2 running, about 3 min left`."""
        text = f"{self.name}: {self.observed:g} of {self.budget} trials done, {len(self._running)} running"
        left = next(task.time_remaining for task in self._bar.tasks if task.id == self._task)
        return text + (f", about {duration_text(left)} left" if left is not None and self.observed < self.budget else "")

    def _create_artifact(self, percent: float) -> None:
        self._artifact_id = create_progress_artifact(progress=percent, description=self._description())

    def _update_artifact(self, percent: float, description: str) -> None:
        if self._artifact_id is not None:
            update_progress_artifact(self._artifact_id, progress=percent, description=description)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as error:  # a report must never stop a sweep
                logger.warning("could not update the Prefect UI: %s", error)

"""The tuning flow's scheduler: slots and deadlines, nothing else.

It keeps `parallelism` trials in flight until the budget is spent. Each decision goes to one
collaborator, in typed messages: the trial lifecycle (`TrialSession`) asks and closes trials in
the store, the `Dispatcher` runs them on Dask and reports what happens to them, the Prefect task
run of each trial waits on its `TrialTicket`, and the `ProgressView` shows each `ClosedTrial`.

Early stopping: each `TrialCheckpoint` is stored and answered through the lifecycle (which
decides from the store's curves and keeps the answer), and the answer goes back to the trial's
worker at once. A trial that ignores "stop" is ended at `max_checkpoints`, its worker restarted
like a timed-out one's; one that obeys returns its latest values and closes `stopped`, and its
slot is filled at once.

Stopping: a `StopRequested` message (the flow run was cancelled in Prefect, Ctrl-C or SIGTERM:
see `StopWatcher`) ends the sweep at once. Results already reported are recorded first; trials that have not
started are withdrawn (their claim token taken back, so no worker ever starts them); running
ones are cancelled on their workers; all of them close `cancelled`, so the next run resumes with
the budget that is left.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from prefect.futures import PrefectFuture
from prefect.futures import wait as wait_for_task_runs
from prefect.task_runners import ThreadPoolTaskRunner

from paretune.flows.dispatch import Dispatcher, Message, StopRequested, TrialEnded
from paretune.flows.progress import ProgressView
from paretune.failures import Failure, FailureKind
from paretune.lifecycle import MetricsRefused, OpenTrial, TrialSession, clean_metrics
from paretune.trial import CheckpointAnswer, TrialCheckpoint, TrialFinished, TrialOutcome, TrialRequest, TrialStarted
from paretune.storage import RunEnvironment
from paretune.tasks.trial import ClosedTrial, TrialTicket, run_trial

logger = logging.getLogger(__name__)
CANCEL_POLL_S = 1.0  # how often the flow run's own state is read, to notice a cancel from the UI or CLI


@dataclass
class InFlight:
    trial: OpenTrial
    ticket: TrialTicket  # carries the trial's number within the experiment
    started_at: float | None = None
    worker: str | None = None
    last_values: dict[str, float] = field(default_factory=dict)  # its last answered checkpoint's


@dataclass(frozen=True)
class SweepEnd:
    cancelled: bool
    reason: str | None = None


class TrialScheduler:
    def __init__(self, session: TrialSession, dispatcher: Dispatcher, task_runner: ThreadPoolTaskRunner,
                 progress: ProgressView, *, objective: str, settings: dict[str, Any], parallelism: int,
                 timeout_s: float | None, environment: RunEnvironment, stop_trials: Callable[[set[str]], None],
                 run_metadata: dict[str, Any], stop_signalled: Callable[[], bool]):
        self.session = session
        self.dispatcher = dispatcher
        self.task_runner = task_runner
        self.progress = progress
        self.objective = objective
        self.settings = settings
        self.parallelism = parallelism
        self.timeout_s = timeout_s
        self.environment = environment
        self.stop_trials = stop_trials
        self.run_metadata = run_metadata
        self.stop_signalled = stop_signalled
        self.in_flight: dict[int, InFlight] = {}
        self.task_runs: list[PrefectFuture] = []
        self.experiment_tag = f"experiment:{session.experiment.name}"

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> SweepEnd:
        try:
            with self.session.storage.batch():
                self.fill_slots()
            while self.in_flight:
                messages = self.dispatcher.next_messages(self.wait_s())
                stop = next((m for m in messages if isinstance(m, StopRequested)), None)
                if stop is not None:
                    self.handle_all(messages)
                    return self.stop(stop.reason)
                # One hold of the store for what the messages report and the trials they free
                # slots for: a closed trial and its successor cost one write session, not four.
                with self.session.storage.batch():
                    self.handle_all(messages)
                    self.time_out_overdue()
                    self.fill_slots()
            return SweepEnd(cancelled=False)
        except KeyboardInterrupt:
            return self.stop("interrupted (Ctrl-C)")
        except BaseException:  # SIGTERM (Prefect's TerminationSignal) or a fault: stop the trials, then surface
            self.stop("the flow run was terminated")
            raise
        finally:
            wait_for_task_runs(self.task_runs)

    def fill_slots(self) -> None:
        """Start trials in the free slots, as far as the budget goes: the store's count of what is
        observed and open, so suggestions other processes hold (`paretune suggest`) count too."""
        free = self.parallelism - len(self.in_flight)
        if free <= 0:
            return
        left = self.session.progress().remaining
        assert left is not None  # the flow stores the budget in force before it sweeps
        cheapest = self.session.spec.least_trial_cost
        while free > 0 and left >= cheapest - 1e-9:  # in cost units: a cheap trial may fit where a full one would not
            trial = self.submit_next()
            left -= self.session.spec.task_cost(trial.task)
            free -= 1

    def submit_next(self) -> OpenTrial:
        (trial,) = self.session.ask(1, with_runs=True, environment=self.environment, run_metadata=self.run_metadata)
        ticket = TrialTicket(trial.suggestion_id, self.trial_number(trial.suggestion_id), trial.assignments)
        task = run_trial.with_options(tags={self.experiment_tag, f"trial:{ticket.trial}",
                                            f"suggestion:{trial.suggestion_id}"})
        self.task_runs.append(self.task_runner.submit(task, parameters={"ticket": ticket}))
        self.in_flight[trial.suggestion_id] = InFlight(trial, ticket)
        monitored = self.session.spec.training_monitor is not None
        self.dispatcher.submit(TrialRequest(
            suggestion_id=trial.suggestion_id, assignments=trial.assignments, objective=self.objective,
            spec=self.session.spec, channel=self.dispatcher.channel_name,
            claim=self.dispatcher.claim_name(trial.suggestion_id), settings=self.settings, task=trial.task,
            answers=self.dispatcher.answers_name(trial.suggestion_id) if monitored else None,
            flow_client=self.dispatcher.flow_client if monitored else None,
        ))
        return trial

    def trial_number(self, suggestion_id: int) -> int:
        return self.session.storage.trial_numbers(self.session.experiment.id, [suggestion_id])[suggestion_id]

    def wait_s(self) -> float | None:
        """Until the next trial deadline; None (wait for a message) without a timeout."""
        deadlines = [f.started_at + self.timeout_s for f in self.in_flight.values()
                     if self.timeout_s is not None and f.started_at is not None]
        return None if not deadlines else max(0.0, min(deadlines) - time.monotonic())

    # -- messages -------------------------------------------------------------------------------
    def handle_all(self, messages: list[Message]) -> None:
        """Record a burst of messages holding the store once (one attach, one publish)."""
        with self.session.storage.batch():
            for message in messages:
                self.handle(message)

    def handle(self, message: Message) -> None:
        flight = self.in_flight.get(getattr(message, "suggestion_id", -1))
        if flight is None:
            return  # already closed (timed out, or its future ended after its result)
        if isinstance(message, TrialStarted):
            flight.started_at, flight.worker = time.monotonic(), message.worker
            self.session.started(flight.trial, message.worker, message.environment)
            self.progress.trial_started(flight.ticket.trial, message.worker)
        elif isinstance(message, TrialCheckpoint):
            self.answer_checkpoint(flight, message)
            self.progress.trial_checkpoint(flight.ticket.trial, message.epoch)
        elif isinstance(message, TrialFinished):
            self.close(flight, message.outcome)
        elif isinstance(message, TrialEnded):
            settled = self.dispatcher.settle(message)
            # A worker lost once the flow was signalled died of that signal (a Prefect worker's
            # cancel SIGTERMs the flow's whole process group, local workers included): the
            # stop it announces cancels the trial, which is no failure of its settings.
            if settled is not None and settled.lost and not self.stop_signalled():
                self.close(flight, TrialOutcome(None, Failure(FailureKind.WORKER_LOST, settled.detail), None))

    def answer_checkpoint(self, flight: InFlight, checkpoint: TrialCheckpoint) -> None:
        """Store the checkpoint and answer it; end the trial here once it ignored "stop" to
        `max_checkpoints` (with the values it reported there)."""
        monitor = self.session.spec.training_monitor
        if monitor is not None and checkpoint.sequence > monitor.max_checkpoints:
            self.end_ignored(flight, flight.last_values)  # never stored: max_checkpoints bounds a trial
            return
        decision = self.session.checkpoint(flight.trial, checkpoint.epoch, checkpoint.values)
        if monitor is None:
            return
        flight.last_values = checkpoint.values
        self.dispatcher.answer(CheckpointAnswer(flight.trial.suggestion_id, checkpoint.sequence, decision.should_stop,
                                                decision.reasons))
        if self.session.must_end(flight.trial, checkpoint.sequence):
            self.end_ignored(flight, checkpoint.values)

    def end_ignored(self, flight: InFlight, values: dict[str, float]) -> None:
        self.end_on_flow_side(flight, "it went on after it was told to stop")
        try:
            outcome = TrialOutcome(clean_metrics(self.session.spec, values), None, self.elapsed(flight))
        except MetricsRefused as refused:
            outcome = TrialOutcome(None, refused.failure, self.elapsed(flight))
        self.close(flight, outcome)

    def end_on_flow_side(self, flight: InFlight, why: str) -> None:
        """Stop a running trial whose result the flow records itself: its worker is restarted (a
        thread cannot be stopped otherwise), and nothing finished is lost with it."""
        self.dispatcher.cancel(flight.trial.suggestion_id)
        if flight.worker is not None:
            logger.warning("restarting Dask worker %s to end trial %s: %s", flight.worker, flight.ticket.trial, why)
            self.dispatcher.restart_worker(flight.worker)

    def elapsed(self, flight: InFlight) -> float | None:
        return None if flight.started_at is None else time.monotonic() - flight.started_at

    def close(self, flight: InFlight, outcome: TrialOutcome) -> None:
        """Record the trial's end (one transaction) and let everyone who waits on it know."""
        trial = flight.trial
        del self.in_flight[trial.suggestion_id]
        self.dispatcher.forget(trial.suggestion_id)
        if outcome.metrics is not None:
            observation = self.session.complete(trial, outcome.metrics, duration_s=outcome.duration_s)
        else:
            assert outcome.failure is not None
            observation = self.session.fail(trial, outcome.failure, duration_s=outcome.duration_s)
        failure = Failure.from_reason(observation.failure_reason) if observation.failed else None
        status = "failed" if observation.failed else "stopped" if observation.stopped else "completed"
        self.announce(flight, ClosedTrial(trial.suggestion_id, flight.ticket.trial, trial.assignments, status,
                                          observation.values,
                                          failure, outcome.duration_s, flight.worker, outcome.traceback),
                      spent=self.session.spec.task_cost(trial.task) * (observation.fidelity or 1.0))

    def announce(self, flight: InFlight, closed: ClosedTrial, *, spent: float) -> None:
        flight.ticket.closed.set_result(closed)
        self.progress.trial_closed(closed, spent=spent)

    # -- ends that are not results ------------------------------------------------------------------
    def time_out_overdue(self) -> None:
        """Fail trials past their deadline, then restart their workers to free the slots (a thread
        cannot be stopped otherwise); finished work is not on workers, so nothing is lost."""
        if self.timeout_s is None:
            return
        now = time.monotonic()
        overdue = [f for f in self.in_flight.values() if f.started_at is not None
                   and now - f.started_at >= self.timeout_s]
        for flight in overdue:
            self.end_on_flow_side(flight, f"timed out after {self.timeout_s:g} s")
            self.close(flight, TrialOutcome(None, Failure(FailureKind.TIMEOUT, f"no result after {self.timeout_s:g} s"),
                                            now - flight.started_at))

    def stop(self, reason: str) -> SweepEnd:
        """End the sweep now: record what already finished, cancel the rest, never re-run it."""
        self.handle_all(self.dispatcher.waiting_messages())
        flights = list(self.in_flight.values())
        placement = self.dispatcher.placement()
        started = [f for f in flights if not self.dispatcher.cancel(f.trial.suggestion_id)]
        self.stop_trials({w for f in started if (w := f.worker or placement.get(f.trial.suggestion_id))})
        self.session.cancel([f.trial for f in flights], f"cancelled: {reason}")
        for flight in flights:
            del self.in_flight[flight.trial.suggestion_id]
            self.dispatcher.forget(flight.trial.suggestion_id)
            self.announce(flight, ClosedTrial(flight.trial.suggestion_id, flight.ticket.trial, flight.trial.assignments,
                                              "cancelled",
                                              failure=None, worker=flight.worker), spent=0.0)
        self.progress.note(f"sweep stopped: {reason}; {len(flights)} trial(s) cancelled, none will run again")
        return SweepEnd(cancelled=True, reason=reason)


class StopWatcher:
    """Turns every way of stopping a sweep into one `StopRequested` message to the scheduler.

    - This flow run cancelled in Prefect (the UI, `prefect flow-run cancel`): its state is read
      once a second.
    - Ctrl-C (SIGINT), or SIGTERM (how a Prefect worker stops a deployment's run): handled here
      while the sweep runs, so the signal never lands in the middle of a database write or a
      Dask call. A second Ctrl-C interrupts at once.
    """

    def __init__(self, flow_run_id: str, dispatcher: Dispatcher):
        self.flow_run_id = flow_run_id
        self.dispatcher = dispatcher
        self._done = threading.Event()
        self._signalled = threading.Event()
        self._reason = ""
        self._previous: dict[int, Any] = {}
        context = contextvars.copy_context()  # Prefect's settings and client live in context variables
        self._thread = threading.Thread(target=context.run, args=(self._watch,), name="paretune-stop", daemon=True)

    def __enter__(self) -> StopWatcher:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._on_signal)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._done.set()
        self._thread.join(timeout=5)

    def signalled(self) -> bool:
        """Whether Ctrl-C or SIGTERM reached the flow: set in the handler itself, before the main
        thread reads another message (the `StopRequested` follows from the watcher's thread)."""
        return self._signalled.is_set()

    def _on_signal(self, number: int, frame: Any) -> None:
        if self._signalled.is_set() and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        self._reason = "interrupted (Ctrl-C)" if number == signal.SIGINT else "terminated (SIGTERM)"
        self._signalled.set()

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while not self._done.is_set():
                if self._signalled.wait(CANCEL_POLL_S):
                    self.dispatcher.post(StopRequested(self._reason))
                    return
                try:
                    state = client.read_flow_run(self.flow_run_id).state
                except Exception as error:  # the API may blink; the sweep goes on
                    logger.debug("could not read flow run %s: %s", self.flow_run_id, error)
                    continue
                if state is not None and (state.is_cancelling() or state.is_cancelled()):
                    self.dispatcher.post(StopRequested("the flow run was cancelled"))
                    return

"""Tune an experiment: keep `parallelism` trials running on Dask until the budget is spent.

Why the Dask client directly, and Prefect task runs in threads of this process: every trial
is a Prefect task run of this flow run (the UI's record of it: assignments in its name, tags
`experiment:` and `suggestion:`, state Completed / Failed / Failed "TimedOut" / Crashed), but
that task runs in a `ThreadPoolTaskRunner` thread here, not on a Dask worker. prefect-dask's
`DaskTaskRunner` ran the whole Prefect task engine on the worker: about 150-180 ms of worker CPU
per trial (restoring Prefect's settings context, a new HTTP client) and Prefect API traffic from
every worker, which at 8 workers on a small machine delayed each dispatch by seconds. Now the
loop submits the objective itself with `Client.submit` (`tasks.trial.DaskTrial`), and the task
thread waits on that same Dask future to end its task run in the right state. The objective is
not submitted from inside the task because a task run's start makes Prefect API calls (tag
concurrency slots, for the trial's tags) that took 0.1-7 s under load: the UI record may start
a little after its trial, the trial never waits for it. Workers run only the objective and need
no Prefect at all.

The loop is event-driven, with one ordered stream of events: a `distributed.Queue` named for
this flow run. A trial posts "started" (its timeout clock starts, the worker is recorded) and
one message per epoch from the worker; when its Dask future ends, a done-callback posts "ended"
from the flow process. A worker's messages are in the queue before its Dask task returns, so
they always come before that trial's "ended". The loop blocks on the queue (or until the next
timeout deadline), handles everything waiting, and refills a slot the moment a trial ends:
there is no batch barrier and no polling delay. Workers never open DuckDB; the loop is its one
writer.

Failures: an exception, a NaN metric or a `TrialFailure` come back as a failed outcome with a
reason; a lost worker (`KilledWorker` after `distributed.scheduler.allowed-failures` + 1
workers died under the trial, or a closed connection) becomes "worker lost". A trial past
`trial_timeout_s` is recorded as "timeout", its Dask future cancelled and its worker process
restarted in the background: a Python thread cannot be killed, so restarting the process is the
only way to reclaim the slot. Nothing retries a trial's own failure.

Resume: every observation is committed when its trial ends. Running the flow again on the same
experiment expires the suggestions a killed run left open and spends only the remaining budget.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import distributed
from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.futures import wait as wait_for_task_runs
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cluster import dask_client
from flows.report import report
from optimizer import ExperimentSpec, Observation, suggest
from storage import DuckDBStorage, Storage, default_db_path
from tasks.record import (PreparedExperiment, close_trial, objective_path, open_run, open_suggestion,
                          prepare_experiment, trial_started)
from tasks.trial import DaskTrial, TrialOutcome, TrialRequest, load_objective, run_trial, short_assignments

# How long the flow waits, at the end, for workers it restarted after timeouts to come back.
RESTART_WAIT_S = 60


class ExperimentSource(BaseModel):
    """Which experiment to tune: a definition file, or one already in the store."""

    model_config = ConfigDict(extra="forbid")

    spec_path: str | None = Field(
        default=None,
        description="YAML/JSON experiment definition. Creates the experiment, or resumes the stored one of "
                    "the same name.",
    )
    experiment: str | None = Field(default=None, description="Id or name of an experiment already in the store.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ExperimentSource:
        if (self.spec_path is None) == (self.experiment is None):
            raise ValueError("give exactly one of `spec_path` (a definition file) or `experiment` (id or name)")
        return self


class TuneOptions(BaseModel):
    """How much to run and where; every field defaults to the spec or the local machine."""

    model_config = ConfigDict(extra="forbid")

    budget: int | None = Field(
        default=None, ge=1,
        description="Total observations (completed + failed) the experiment should hold when the run ends. "
                    "Default: the spec's observation_budget.",
    )
    parallelism: int | None = Field(
        default=None, ge=1, description="Trials in flight. Default: the spec's parallel_bandwidth."
    )
    trial_timeout_s: float | None = Field(
        default=None, gt=0, description="A trial running longer is recorded as failed ('timeout')."
    )
    dask_address: str | None = Field(
        default=None, description="Scheduler of an existing Dask cluster (tcp://host:8786). Default: a local one."
    )
    n_workers: int | None = Field(
        default=None, ge=1, description="Local cluster size. Default: `parallelism` (CPU) or one per GPU."
    )
    threads_per_worker: int = Field(default=1, ge=1, description="Trials one local worker runs at once.")
    seed: int | None = Field(default=None, description="Optimizer seed, for repeatable suggestions.")
    report: bool = Field(default=True, description="Run the report flow when the budget is spent.")


class TuneResult(BaseModel):
    experiment_id: int
    experiment: str
    budget: int
    observations: int
    completed: int
    failed: int
    expired_on_start: int


@dataclass
class Trial:
    """A suggestion in flight."""

    suggestion_id: int
    run_id: int
    assignments: dict[str, Any]
    dask: DaskTrial
    started_at: float | None = None
    worker: str | None = None
    timed_out: bool = False
    epochs_stored: set[int] = field(default_factory=set)


class TrialLoop:
    """Keeps `parallelism` trials in flight; the single place the flow process writes trials."""

    def __init__(self, storage: Storage, client: distributed.Client, task_runner: ThreadPoolTaskRunner,
                 experiment: PreparedExperiment, parallelism: int, timeout_s: float | None, seed: int | None):
        self.storage = storage
        self.client = client
        self.task_runner = task_runner
        self.experiment = experiment
        self.spec: ExperimentSpec = experiment.spec
        self.objective = objective_path(self.spec)
        self.settings = dict((self.spec.metadata or {}).get("trial") or {})
        self.parallelism = parallelism
        self.timeout_s = timeout_s
        self.seed = seed
        self.logger = get_run_logger()
        self.history: list[Observation] = storage.history(experiment.experiment_id)
        self.suggestions_made = len(storage.list_suggestions(experiment.experiment_id))
        self.observed = experiment.already_observed
        self.in_flight: dict[int, Trial] = {}
        self.channel_name = f"paretune-trials-{flow_run.id or uuid.uuid4()}"
        self.channel = distributed.Queue(self.channel_name, client=client)
        self.experiment_tag = f"experiment:{experiment.name}"
        self.progress_artifact = create_progress_artifact(
            progress=self._percent_done(),
            description=f"{experiment.name}: observations out of a budget of {experiment.budget}",
        )
        self.console = Console(stderr=True)
        self.restarts: list[threading.Thread] = []
        self.task_runs: list[PrefectFuture] = []

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        columns = (TextColumn(f"[bold]{self.experiment.name}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=self.console) as bar:
            self.bar = bar
            self.task_id = bar.add_task("observations", total=self.experiment.budget, completed=self.observed)
            self.fill_slots()
            while self.in_flight:
                for message in self.next_messages():
                    self.handle(message)
                self.time_out_overdue_trials()
        # The UI records may lag their trials; let each reach its final state before the runner closes.
        wait_for_task_runs(self.task_runs)
        for thread in self.restarts:
            thread.join(timeout=RESTART_WAIT_S)

    def fill_slots(self) -> None:
        while len(self.in_flight) < self.parallelism and self.observed + len(self.in_flight) < self.experiment.budget:
            self.submit_next()

    def submit_next(self) -> None:
        pending = [trial.assignments for trial in self.in_flight.values()]
        seed = None if self.seed is None else self.seed + self.suggestions_made
        (assignments,) = suggest(self.spec, self.history, pending, n=1, seed=seed)
        self.suggestions_made += 1
        suggestion = open_suggestion(self.storage, self.experiment.experiment_id, assignments)
        request = TrialRequest(suggestion_id=suggestion.id, assignments=suggestion.assignments,
                               objective=self.objective, spec=self.spec, settings=self.settings,
                               channel=self.channel_name)
        dask_trial = DaskTrial(self.client, request)
        trial_task = run_trial.with_options(tags={self.experiment_tag, f"suggestion:{suggestion.id}"})
        task_run = self.task_runner.submit(trial_task, parameters={"trial": dask_trial})
        self.task_runs.append(task_run)
        run_id = open_run(self.storage, self.experiment.experiment_id, suggestion.id, suggestion.assignments,
                          str(task_run.task_run_id))
        self.in_flight[suggestion.id] = Trial(suggestion.id, run_id, suggestion.assignments, dask_trial)
        dask_trial.future.add_done_callback(self._announce_end(suggestion.id))

    def _announce_end(self, suggestion_id: int) -> Callable[[distributed.Future], None]:
        """A done-callback for the trial's Dask future: queue "ended" behind the trial's own messages."""
        def announce(_: distributed.Future) -> None:
            self.channel.put(("ended", suggestion_id))
        return announce

    def next_messages(self) -> list[tuple]:
        """Block until a message arrives (or the next timeout deadline passes), then take all waiting."""
        deadlines = [t.started_at + self.timeout_s for t in self.in_flight.values()
                     if self.timeout_s is not None and t.started_at is not None and not t.timed_out]
        wait = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
        try:
            first = self.channel.get(timeout=wait)
        except TimeoutError:
            return []
        return [first, *self.channel.get(batch=True)]

    # -- messages -------------------------------------------------------------------------------
    def handle(self, message: tuple) -> None:
        kind, suggestion_id, *body = message
        trial = self.in_flight.get(suggestion_id)
        if trial is None:
            return
        if kind == "started":
            trial.started_at, trial.worker = time.monotonic(), body[0]
            trial_started(self.storage, trial.suggestion_id, trial.run_id, trial.worker)
        elif kind == "checkpoint":
            self.store_checkpoint(trial, *body)
        elif kind == "ended":
            del self.in_flight[suggestion_id]
            outcome = trial.dask.outcome()
            duration = self.finish(trial, outcome)
            self.fill_slots()
            self.show_progress(trial, outcome, duration)  # the UI and terminal after the refill, off its path

    def store_checkpoint(self, trial: Trial, epoch: int, values: dict[str, float]) -> None:
        self.storage.add_checkpoint(trial.run_id, epoch, values)
        trial.epochs_stored.add(epoch)

    # -- ends -----------------------------------------------------------------------------------
    def time_out_overdue_trials(self) -> None:
        """Cancel trials past their deadline; each is recorded when its cancelled future announces its end."""
        if self.timeout_s is None:
            return
        now = time.monotonic()
        for trial in self.in_flight.values():
            if trial.timed_out or trial.started_at is None or now - trial.started_at < self.timeout_s:
                continue
            trial.timed_out = True
            trial.dask.time_out(f"timeout: no result after {self.timeout_s:g} s")
            self.restart_worker(trial.worker)

    def restart_worker(self, worker: str | None) -> None:
        """Free a slot held by a stuck thread; in the background, so the other trials keep going."""
        if worker is None:
            return
        self.logger.warning("restarting Dask worker %s to stop a timed-out trial", worker)

        def restart() -> None:
            try:
                self.client.restart_workers([worker], raise_for_error=False)
            except Exception as error:
                self.logger.warning("could not restart Dask worker %s: %s", worker, error)

        thread = threading.Thread(target=restart, name=f"restart {worker}", daemon=True)
        thread.start()
        self.restarts.append(thread)

    def finish(self, trial: Trial, outcome: TrialOutcome) -> float | None:
        """Record the trial's end (observation, run, late checkpoints) and teach the history; return its duration."""
        for epoch, values in outcome.checkpoints:
            if epoch not in trial.epochs_stored:
                self.store_checkpoint(trial, epoch, values)
        duration = outcome.duration_s
        if duration is None and trial.started_at is not None:
            duration = time.monotonic() - trial.started_at
        if duration is not None and not math.isfinite(duration):
            duration = None
        close_trial(self.storage, trial.suggestion_id, trial.run_id, outcome.values, outcome.failure_reason, duration,
                    outcome.unobserved)
        self.observed += 1
        self.history.append(Observation(assignments=trial.assignments, values=outcome.values,
                                        failed=outcome.failed, failure_reason=outcome.failure_reason))
        return duration

    def show_progress(self, trial: Trial, outcome: TrialOutcome, duration: float | None) -> None:
        update_progress_artifact(self.progress_artifact, progress=self._percent_done())
        self.bar.update(self.task_id, completed=self.observed)
        self.bar.console.print(self._line(trial, outcome, duration), highlight=False, soft_wrap=True)

    def _line(self, trial: Trial, outcome: TrialOutcome, duration: float | None) -> str:
        took = "" if duration is None else f" ({duration:.2f} s)"
        if outcome.failed:
            result = f"[red]failed[/red] {outcome.failure_reason}"
        else:
            result = "[green]ok[/green] " + short_assignments(outcome.values or {})
        return f"trial {trial.suggestion_id:>4} {short_assignments(trial.assignments)} -> {result}{took}"

    def _percent_done(self) -> float:
        return round(100.0 * min(self.observed, self.experiment.budget) / self.experiment.budget, 1)


@flow(name="tune", log_prints=True)
def tune(
    experiment: ExperimentSource,
    db_path: str | None = None,
    options: TuneOptions = TuneOptions(),
) -> TuneResult:
    """Run trials of an experiment on Dask until its observation budget is spent, then report."""
    logger = get_run_logger()
    db_path = db_path or default_db_path()
    with DuckDBStorage(db_path) as storage:
        prepared = prepare_experiment(storage, experiment.spec_path, experiment.experiment, options.budget)
        parallelism = options.parallelism or prepared.spec.parallel_bandwidth
        if prepared.already_observed < prepared.budget:
            if options.dask_address is None:
                load_objective(objective_path(prepared.spec))
            with dask_client(options.dask_address, options.n_workers or parallelism,
                             options.threads_per_worker) as client, \
                    ThreadPoolTaskRunner(max_workers=parallelism) as task_runner:
                TrialLoop(storage, client, task_runner, prepared, parallelism, options.trial_timeout_s,
                          options.seed).run()
        else:
            logger.info("experiment %s already holds %s observations (budget %s): nothing to run",
                        prepared.name, prepared.already_observed, prepared.budget)
        progress = storage.progress(prepared.experiment_id)
    if options.report:
        report(experiment=str(prepared.experiment_id), db_path=db_path)
    return TuneResult(
        experiment_id=prepared.experiment_id, experiment=prepared.name, budget=prepared.budget,
        observations=progress.observations, completed=progress.completed, failed=progress.failed,
        expired_on_start=len(prepared.expired_suggestions),
    )


def main(argv: list[str] | None = None) -> TuneResult:
    from flows.local_prefect import prefect_api

    parser = argparse.ArgumentParser(prog="python -m flows.tune", description=tune.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("spec_path", nargs="?", help="experiment definition (YAML/JSON)")
    source.add_argument("--experiment", help="id or name of an experiment already in the store")
    parser.add_argument("--db", help=f"DuckDB file (default: $PARETUNE_DB or {default_db_path()})")
    parser.add_argument("--budget", type=int, help="total observations to reach")
    parser.add_argument("--parallelism", type=int, help="trials in flight")
    parser.add_argument("--timeout", type=float, dest="trial_timeout_s", help="per-trial timeout in seconds")
    parser.add_argument("--address", dest="dask_address", help="Dask scheduler of an existing cluster")
    parser.add_argument("--workers", type=int, dest="n_workers", help="local cluster size")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-report", dest="report", action="store_false")
    args = parser.parse_args(argv)
    options = TuneOptions(**{name: getattr(args, name) for name in TuneOptions.model_fields
                             if getattr(args, name, None) is not None})
    with prefect_api():
        return tune(ExperimentSource(spec_path=args.spec_path, experiment=args.experiment), args.db, options)


if __name__ == "__main__":
    main()

"""Tune an experiment: keep `parallelism` trials running on Dask until the budget is spent.

How the loop stays asynchronous: the flow enters a prefect-dask `DaskTaskRunner` (chosen by
`flows.cluster.cluster_for`) and submits each trial through it, so every trial is a Prefect
task run of this flow run, executed on a Dask worker. Each `PrefectDaskFuture` wraps a
`distributed.Future`; the loop waits on those with `distributed.wait(FIRST_COMPLETED)` and, the
moment one trial ends, records it and asks the optimizer for the next suggestion. There is no
batch barrier: a slot is refilled before any other completion is handled. (The runner rather
than a bare Dask client, because it gives task runs linked to the flow run for free, and its
wrapped futures still give Dask's first-completed waiting.)

Checkpoints stream back through a `distributed.Queue` named for this flow run: a trial posts
"started" (its timeout clock starts, the worker is recorded) and one message per epoch; the
loop drains the queue between completions and writes them, since workers never open DuckDB.

Failures: an exception, a NaN metric or a `TrialFailure` come back as a failed outcome with a
reason; a lost worker (the task failed on `distributed.scheduler.allowed-failures` + 1 workers)
becomes "worker lost". A trial past `trial_timeout_s` is recorded as "timeout", its future
cancelled and its worker process restarted in the background: a Python thread cannot be
killed, so restarting the process is the only way to reclaim the slot. Dask reruns tasks of a
worker that died and Prefect retries connection faults; nothing retries a trial's own failure.

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
from typing import Any

import distributed
from distributed import KilledWorker
from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import Crashed, Failed, State
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cluster import cluster_for
from flows.report import report
from optimizer import ExperimentSpec, Observation, suggest
from storage import DuckDBStorage, Storage, default_db_path
from tasks.record import PreparedExperiment, close_trial, objective_path, open_trial, prepare_experiment, trial_started
from tasks.trial import TrialOutcome, TrialRequest, failure_reason, load_objective, run_trial, short_assignments

# How long the loop waits for a completion before draining checkpoints and checking timeouts.
POLL_S = 0.25
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
    future: PrefectDaskFuture
    started_at: float | None = None
    worker: str | None = None
    epochs_stored: set[int] = field(default_factory=set)


class TrialLoop:
    """Keeps `parallelism` trials in flight; the single place the flow process writes trials."""

    def __init__(self, storage: Storage, runner: DaskTaskRunner, experiment: PreparedExperiment,
                 parallelism: int, timeout_s: float | None, seed: int | None):
        self.storage = storage
        self.runner = runner
        self.experiment = experiment
        self.spec: ExperimentSpec = experiment.spec
        self.objective = objective_path(self.spec)
        self.parallelism = parallelism
        self.timeout_s = timeout_s
        self.seed = seed
        self.logger = get_run_logger()
        self.history: list[Observation] = storage.history(experiment.experiment_id)
        self.suggestions_made = len(storage.list_suggestions(experiment.experiment_id))
        self.observed = experiment.already_observed
        self.in_flight: dict[str, Trial] = {}
        self.channel_name = f"paretune-trials-{flow_run.id or uuid.uuid4()}"
        self.channel = distributed.Queue(self.channel_name, client=runner.client)
        self.experiment_tag = f"experiment:{experiment.name}"
        self.progress_artifact = create_progress_artifact(
            progress=self._percent_done(),
            description=f"{experiment.name}: observations out of a budget of {experiment.budget}",
        )
        self.console = Console(stderr=True)
        self.restarts: list[threading.Thread] = []

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        columns = (TextColumn(f"[bold]{self.experiment.name}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with self.runner.client.as_current(), Progress(*columns, console=self.console) as bar:
            self.bar = bar
            self.task_id = bar.add_task("observations", total=self.experiment.budget, completed=self.observed)
            self.fill_slots()
            while self.in_flight:
                done = self.wait_for_first_completion()
                self.drain_channel()
                for key in done:
                    trial = self.in_flight.pop(key)
                    self.finish(trial, self.outcome_of(trial))
                    self.fill_slots()
                self.time_out_overdue_trials()
                self.fill_slots()
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
        suggestion_id, run_id = open_trial(self.storage, self.experiment.experiment_id, assignments)
        request = TrialRequest(
            suggestion_id=suggestion_id, assignments=assignments, objective=self.objective, spec=self.spec,
            settings=dict((self.spec.metadata or {}).get("trial") or {}), channel=self.channel_name,
        )
        trial_task = run_trial.with_options(tags={self.experiment_tag, f"suggestion:{suggestion_id}"})
        future = self.runner.submit(trial_task, parameters={"request": request})
        self.storage.log_run_metadata(run_id, {"prefect_task_run_id": str(future.task_run_id)})
        self.in_flight[future.wrapped_future.key] = Trial(suggestion_id, run_id, assignments, future)

    def wait_for_first_completion(self) -> list[str]:
        """Keys of finished trials; empty when the poll interval (or a timeout deadline) passes first."""
        timeout = POLL_S
        deadlines = [t.started_at + self.timeout_s for t in self.in_flight.values()
                     if self.timeout_s is not None and t.started_at is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        futures = [trial.future.wrapped_future for trial in self.in_flight.values()]
        try:
            done, _ = distributed.wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return []
        return [f.key for f in done]

    # -- messages from running trials -----------------------------------------------------------
    def drain_channel(self) -> None:
        by_suggestion = {trial.suggestion_id: trial for trial in self.in_flight.values()}
        for message in self.channel.get(batch=True):
            trial = by_suggestion.get(message[1])
            if trial is None:
                continue
            if message[0] == "started":
                trial.started_at, trial.worker = time.monotonic(), message[2]
                trial_started(self.storage, trial.suggestion_id, trial.run_id, trial.worker)
            elif message[0] == "checkpoint":
                self.store_checkpoint(trial, message[2], message[3])

    def store_checkpoint(self, trial: Trial, epoch: int, values: dict[str, float]) -> None:
        self.storage.add_checkpoint(trial.run_id, epoch, values)
        trial.epochs_stored.add(epoch)

    # -- ends -----------------------------------------------------------------------------------
    def outcome_of(self, trial: Trial) -> TrialOutcome:
        """What the worker sent back, or why nothing came back."""
        try:
            state: State = trial.future.wrapped_future.result()
        except (KilledWorker, distributed.CancelledError, ConnectionError) as error:
            reason = f"worker lost: {type(error).__name__}: {error}"
            self.mark_task_run(trial, Crashed(message=reason))
            return self.without_outcome(trial, reason)
        result = state.result(raise_on_failure=False)
        if isinstance(result, TrialOutcome):
            return result
        if isinstance(result, BaseException):
            return self.without_outcome(trial, failure_reason(result))
        return self.without_outcome(trial, f"error: the trial task ended {state.type.value} without an outcome")

    def without_outcome(self, trial: Trial, reason: str) -> TrialOutcome:
        elapsed = None if trial.started_at is None else time.monotonic() - trial.started_at
        return TrialOutcome(trial.suggestion_id, None, reason, elapsed, trial.worker, [])

    def time_out_overdue_trials(self) -> None:
        if self.timeout_s is None:
            return
        now = time.monotonic()
        for key, trial in list(self.in_flight.items()):
            if trial.started_at is None or now - trial.started_at < self.timeout_s:
                continue
            del self.in_flight[key]
            reason = f"timeout: no result after {self.timeout_s:g} s"
            trial.future.wrapped_future.cancel(force=True)
            self.restart_worker(trial.worker)
            self.mark_task_run(trial, Failed(name="TimedOut", message=reason))
            self.finish(trial, self.without_outcome(trial, reason))
            self.fill_slots()

    def restart_worker(self, worker: str | None) -> None:
        """Free a slot held by a stuck thread; in the background, so the other trials keep going."""
        if worker is None:
            return
        self.logger.warning("restarting Dask worker %s to stop a timed-out trial", worker)

        def restart() -> None:
            try:
                self.runner.client.restart_workers([worker], raise_for_error=False)
            except Exception as error:
                self.logger.warning("could not restart Dask worker %s: %s", worker, error)

        thread = threading.Thread(target=restart, name=f"restart {worker}", daemon=True)
        thread.start()
        self.restarts.append(thread)

    def mark_task_run(self, trial: Trial, state: State) -> None:
        """Give the UI the end a worker could not report (it timed out or died)."""
        with get_client(sync_client=True) as client:
            client.set_task_run_state(trial.future.task_run_id, state, force=True)

    def finish(self, trial: Trial, outcome: TrialOutcome) -> None:
        for epoch, values in outcome.checkpoints:
            if epoch not in trial.epochs_stored:
                self.store_checkpoint(trial, epoch, values)
        duration = outcome.duration_s if outcome.duration_s is not None and math.isfinite(outcome.duration_s) else None
        close_trial(self.storage, trial.suggestion_id, trial.run_id, outcome.values, outcome.failure_reason, duration)
        self.observed += 1
        self.history.append(Observation(assignments=trial.assignments, values=outcome.values,
                                        failed=outcome.failed, failure_reason=outcome.failure_reason))
        update_progress_artifact(self.progress_artifact, progress=self._percent_done())
        self.bar.update(self.task_id, completed=self.observed)
        self.bar.console.print(self._line(trial, outcome), highlight=False, soft_wrap=True)

    def _line(self, trial: Trial, outcome: TrialOutcome) -> str:
        took = "" if outcome.duration_s is None else f" ({outcome.duration_s:.2f} s)"
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
            runner = cluster_for(options.dask_address, options.n_workers or parallelism, options.threads_per_worker)
            with runner:
                TrialLoop(storage, runner, prepared, parallelism, options.trial_timeout_s, options.seed).run()
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

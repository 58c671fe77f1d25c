"""Tune an experiment: keep `parallelism` trials running on Dask until the budget is spent.

    plan (checked before anything starts) -> create or resume the experiment -> take its lease
    -> expire what a dead run left open -> sweep -> report

The sweep is `flows.scheduler.TrialScheduler`; trials run on Dask (`flows.dispatch`), each exactly
once (`paretune.trial`), and are closed through the one trial lifecycle (`paretune.lifecycle`).
Every trial is a Prefect task run of this flow run (`tasks.trial`), and the flow run's Artifacts
tab holds the progress and the live report. The DuckDB file is held only while a write commits,
so readers (the CLI, the report flow, the dashboard, your own SQL) and other sweeps work while
this one runs; one run at a time tunes a given experiment (its lease).

Resume: every observation is committed when its trial ends. Running the flow again on the same
experiment expires the suggestions a killed run left open and spends only the remaining budget;
a cancelled run's trials are `cancelled` and are not counted either.
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Cancelled, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from paretune.flows.cluster import dask_cluster
from paretune.flows.dispatch import Dispatcher
from paretune.flows.progress import ProgressView
from paretune.flows.report import report
from paretune.flows.scheduler import StopWatcher, SweepEnd, TrialScheduler
from paretune.optimizer.spec import MAX_OBSERVATION_BUDGET, MAX_PARALLEL_BANDWIDTH
from paretune.environment import capture_environment
from paretune.lifecycle import TrialSession
from paretune.storage import DuckDBStorage, default_db_path
from paretune.storage.files import experiment_lease, holder_description
from paretune.tasks.report import LiveReport
from paretune.tasks.record import PreparedExperiment, TunePlan, TuneRequestError, plan_tune, prepare_experiment, resume_experiment

# How long the flow waits for the DuckDB file when another program (a user's `duckdb` shell on the
# file itself) holds it: results wait in memory meanwhile, and trials keep running.
FLOW_DB_WAIT_S = 3600.0
RESTART_WAIT_S = 60  # how long the end of a run waits for workers it restarted after timeouts


class ExperimentSource(BaseModel):
    """Which experiment to tune: a definition file, or one already in the store."""

    model_config = ConfigDict(extra="forbid")

    spec_path: str | None = Field(
        default=None,
        description="YAML/JSON experiment definition. Creates the experiment, or resumes the stored one of the "
                    "same name when its definition is the same.",
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
        default=None, ge=1, le=MAX_OBSERVATION_BUDGET,
        description="Total observations (completed + failed) the experiment should hold when the run ends; stored as "
                    "the experiment's budget. Default: the stored budget, else the spec's observation_budget.",
    )
    parallelism: int | None = Field(
        default=None, ge=1, le=MAX_PARALLEL_BANDWIDTH, description="Trials in flight. Default: the spec's "
                                                                   "parallel_bandwidth.",
    )
    trial_timeout_s: float | None = Field(
        default=None, gt=0, description="A trial running longer is recorded as failed ('timeout') and its worker "
                                        "restarted.",
    )
    dask_address: str | None = Field(
        default=None, description="Scheduler of an existing Dask cluster (tcp://host:8786). Default: a local one."
    )
    n_workers: int | None = Field(
        default=None, ge=1, description="Local cluster size. Default: `parallelism` (CPU) or one per GPU."
    )
    threads_per_worker: int = Field(default=1, ge=1, description="Trials one local worker runs at once.")
    seed: int | None = Field(default=None, description="Optimizer seed. Default: one derived from the experiment, so "
                                                       "a replay suggests the same points.")
    wait_for_experiment_s: float = Field(
        default=0, ge=0, description="How long to wait while another run tunes the same experiment before this one is "
                                     "refused (0: refuse at once).",
    )
    report: bool = Field(default=True, description="Run the report flow when the budget is spent.")


class TuneResult(BaseModel):
    experiment_id: int
    experiment: str
    budget: int
    observations: int
    completed: int
    failed: int
    expired_on_start: int
    stopped: int = 0  # stopped early (training monitor, Pareto early stopping)
    cancelled: bool = False
    stop_reason: str | None = None


@flow(name="tune", log_prints=True)
def tune(
    experiment: ExperimentSource,
    db_path: str | None = None,
    options: TuneOptions = TuneOptions(),
) -> TuneResult | State:
    """Run trials of an experiment on Dask until its observation budget is spent, then report."""
    db_path = db_path or default_db_path()
    plan = plan_tune(experiment.spec_path, experiment.experiment, db_path, options.budget,
                     import_objective=options.dask_address is None)
    with DuckDBStorage(db_path, lock_timeout_s=FLOW_DB_WAIT_S) as storage:
        record = prepare_experiment(storage, plan)
        with experiment_lease(storage.files, record.id, wait_s=options.wait_for_experiment_s,
                              holder=holder_description(f"tune flow run {flow_run.id}")):
            prepared = resume_experiment(storage, record, plan.budget)
            end = SweepEnd(cancelled=False)
            if prepared.already_spent < prepared.budget:
                end = sweep(storage, prepared, plan, options)
        progress = storage.progress(record.id)
    result = TuneResult(
        experiment_id=record.id, experiment=record.name, budget=prepared.budget, observations=progress.observations,
        completed=progress.completed, failed=progress.failed, stopped=progress.stopped,
        expired_on_start=len(prepared.expired_suggestions),
        cancelled=end.cancelled, stop_reason=end.reason,
    )
    if end.cancelled:
        return Cancelled(message=f"{record.name}: {end.reason}; {progress.observations} of {prepared.budget} "
                                 "observations kept, run again to resume", data=result)
    if options.report:
        report(experiment=str(record.id), db_path=db_path)
    return result


def finished_tune(experiment: ExperimentSource, db_path: str | None = None,
                  options: TuneOptions = TuneOptions()) -> TuneResult:
    """`tune` for a program that goes on with its result (the CLI, the demos, the benchmarks).

    A sweep that was cancelled, interrupted (Ctrl-C) or terminated ends the program with the
    flow's message ("run again to resume") and exit status 130; a failed one with status 1.
    Called without `return_state`, Prefect raises a TypeError for a cancelled flow's result.
    """
    state = tune(experiment, db_path, options, return_state=True)
    if state.is_completed():
        return state.result()
    print(f"{state.name.lower()}: {state.message}", file=sys.stderr)
    raise SystemExit(130 if state.is_cancelled() else 1)


def sweep(storage: DuckDBStorage, prepared: PreparedExperiment, plan: TunePlan, options: TuneOptions) -> SweepEnd:
    """Keep trials in flight on a Dask cluster until the budget is spent or the run is stopped."""
    parallelism = options.parallelism or prepared.spec.parallel_bandwidth
    session = TrialSession(storage, prepared.experiment_id, seed=options.seed)
    # The live report reads the published copy, so refreshing it never holds up the sweep's writes.
    workers = options.n_workers or parallelism
    with DuckDBStorage(storage.path, read_only=True) as reader, \
            dask_cluster(options.dask_address, workers, options.threads_per_worker) as cluster, \
            ThreadPoolTaskRunner(max_workers=parallelism) as task_runner:
        dispatcher = Dispatcher(cluster.client, str(flow_run.id))
        progress = ProgressView(prepared.name, prepared.budget, prepared.already_spent,
                                live_report=LiveReport(reader, prepared.experiment_id).publish,
                                report_every_trials=max(parallelism, 5))
        with progress, StopWatcher(str(flow_run.id), dispatcher) as watcher:
            end = TrialScheduler(
                session, dispatcher, task_runner, progress, objective=plan.objective,
                settings=dict((prepared.spec.metadata or {}).get("trial") or {}), parallelism=parallelism,
                timeout_s=options.trial_timeout_s, environment=capture_environment(),
                stop_trials=cluster.stop_trials_now,
                run_metadata={"prefect_flow_run_id": str(flow_run.id)}, stop_signalled=watcher.signalled,
            ).run()
            progress.final_report = not end.cancelled
        dispatcher.wait_for_restarts(RESTART_WAIT_S)
    return end


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def main(argv: list[str] | None = None, prog: str = "python -m paretune.flows.tune") -> int:
    """`python -m paretune.flows.tune`: bad input is refused before Prefect or Dask start, in one message."""
    parser = argparse.ArgumentParser(prog=prog, description=tune.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("spec_path", nargs="?", help="experiment definition (YAML/JSON)")
    source.add_argument("--experiment", help="id or name of an experiment already in the store")
    parser.add_argument("--db", help=f"DuckDB file (default: $PARETUNE_DB or {default_db_path()})")
    parser.add_argument("--budget", type=_positive_int, help="total observations to reach (stored as the budget)")
    parser.add_argument("--parallelism", type=_positive_int, help="trials in flight")
    parser.add_argument("--timeout", type=_positive_float, dest="trial_timeout_s", help="per-trial timeout, seconds")
    parser.add_argument("--address", dest="dask_address", help="Dask scheduler of an existing cluster")
    parser.add_argument("--workers", type=_positive_int, dest="n_workers", help="local cluster size")
    parser.add_argument("--seed", type=int, help="optimizer seed (default: derived from the experiment)")
    parser.add_argument("--wait", type=float, dest="wait_for_experiment_s", default=0.0,
                        help="seconds to wait while another run tunes the same experiment (default: refuse at once)")
    parser.add_argument("--no-report", dest="report", action="store_false", help="skip the report flow at the end")
    args = parser.parse_args(argv)
    db_path = args.db or default_db_path()
    try:
        options = TuneOptions(**{name: getattr(args, name) for name in TuneOptions.model_fields
                                 if getattr(args, name, None) is not None})
        plan_tune(args.spec_path, args.experiment, db_path, options.budget,
                  import_objective=options.dask_address is None)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        parser.exit(2, f"{parser.prog}: error: --{str(problem['loc'][0]).replace('_', '-')}: {problem['msg']}\n")
    except TuneRequestError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")

    from paretune.flows.local_prefect import prefect_api

    with prefect_api():
        finished_tune(ExperimentSource(spec_path=args.spec_path, experiment=args.experiment), db_path, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())

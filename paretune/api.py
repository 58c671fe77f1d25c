"""Ask/tell over the store, in SigOpt's words, for users who bring their own loop.

    experiment = paretune.create_experiment("experiments/demo.yaml")
    while not experiment.progress().done:
        suggestion = experiment.suggest()
        experiment.observe(suggestion, values=train(**suggestion.assignments))
    print(experiment.frontier())

A thin front: every call delegates to the trial lifecycle (`paretune.lifecycle.TrialSession`),
which the tuning flow and the CLI use too.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from paretune import optimizer
from paretune.optimizer import ExperimentSpec
from paretune.failures import Failure, TrialFailure
from paretune.lifecycle import OpenTrial, TrialSession
from paretune.runs import Run
from paretune.storage import DuckDBStorage, ObservationRecord, Progress, Storage, StorageError
from paretune.storage.files import experiment_lease, holder_description
from paretune.storage.report import frontier_points, point_record
from paretune.storage.row_rules import check_outcome_shape


@dataclass(frozen=True)
class Suggestion:
    """What to try: the assignments (SigOpt's shape: conditionals' values by name, inactive
    parameters left out) and, when the experiment has tasks, the task to run it at."""

    id: int
    assignments: dict[str, Any]
    task: str | None = None


class Experiment:
    """One experiment in a store; every method reads or writes through that store.

    `seed` replaces the seed derived from the experiment, for repeating a study elsewhere.
    """

    def __init__(self, storage: Storage, experiment_id: int, *, seed: int | None = None):
        self.session = TrialSession(storage, experiment_id, seed=seed)

    @property
    def storage(self) -> Storage:
        return self.session.storage

    @property
    def id(self) -> int:
        return self.session.experiment_id

    @property
    def name(self) -> str:
        return self.session.experiment.name

    @property
    def spec(self) -> ExperimentSpec:
        return self.session.spec

    # -- ask ----------------------------------------------------------------------------------
    def suggest(self) -> Suggestion:
        """A new suggestion from the optimizer, recorded as open until observed."""
        return self.suggest_batch(1)[0]

    def suggest_batch(self, n: int) -> list[Suggestion]:
        """`n` diverse suggestions at once (for `n` parallel workers), within the budget left."""
        return [Suggestion(t.suggestion_id, t.assignments, t.task) for t in self.session.ask(n)]

    # -- tell ---------------------------------------------------------------------------------
    def observe(
        self,
        suggestion: Suggestion | int,
        *,
        values: dict[str, Any] | list[dict[str, Any]] | None = None,
        failed: bool = False,
        reason: str | None = None,
        duration_s: float | None = None,
        value_stddevs: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ObservationRecord:
        """Report a suggestion's metric values, or `failed=True` with a `reason`.

        `values` is `{metric: number}` or SigOpt's list `[{"name", "value", "value_stddev"}]`;
        `value_stddevs` gives measured standard deviations by metric (the search takes them as
        noise); `metadata` is kept with the observation. Refused, writing nothing: an unknown or
        already-observed suggestion, one from another experiment, a missing optimized/constraint
        metric, a metric the spec does not name, a value that is not a finite number (numpy and
        torch scalars are numbers), a negative standard deviation.
        """
        suggestion_id = suggestion.id if isinstance(suggestion, Suggestion) else suggestion
        check_outcome_shape(failed=failed, has_values=bool(values or value_stddevs), reason=reason)
        if failed:
            return self.session.fail(suggestion_id, Failure.from_reason(reason), duration_s=duration_s,
                                     metadata=metadata)
        if values is None:
            raise StorageError("give the metric values (values={...}), or failed=True")
        if value_stddevs:
            if not isinstance(values, dict) or not isinstance(value_stddevs, dict):
                raise StorageError("value_stddevs goes with values given as {metric: number}; in SigOpt's list form, "
                                   "put each value_stddev in its item")
            values = {name: {"value": value, "value_stddev": value_stddevs[name]} if name in value_stddevs else value
                      for name, value in values.items()}
            unmatched = sorted(set(value_stddevs) - set(values))
            if unmatched:
                raise StorageError(f"value_stddevs.{unmatched[0]}: no value reported for it")
        return self.session.complete(suggestion_id, values, duration_s=duration_s, strict=True, metadata=metadata)

    # -- SigOpt's run loop ------------------------------------------------------------------------
    def loop(self) -> Iterator[TrialRun]:
        """Yield one run per suggestion until the budget is spent (SigOpt's `experiment.loop()`).

        Inside ``with run:``, `run.params` holds the assignments; metrics logged with
        `run.log_metric` become the observation when the block ends (a NaN is a diverged trial,
        metrics the experiment does not declare stay on the run), and an exception becomes a
        failed observation: a `paretune.failures.TrialFailure` is swallowed, anything else
        propagates once recorded.
        """
        if self.session.progress().budget is None:
            raise StorageError("loop() needs an observation_budget in the experiment definition")
        while not self.progress().done:
            (trial,) = self.session.ask(1, with_runs=True)
            yield TrialRun(self.session, trial)

    def set_observation_budget(self, budget: int) -> None:
        """Raise (or lower) the budget in force, as SigOpt's experiment update did; it is stored."""
        self.update(budget=budget)

    # -- manage -------------------------------------------------------------------------------
    def update(self, *, name: str | None = None, budget: int | None = None, parallel_bandwidth: int | None = None,
               thresholds: dict[str, float | None] | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Change the experiment mid-way, as SigOpt's experiment update does: its name, budget,
        parallel bandwidth, metric thresholds (`{metric: number}`, None removes one; the search
        uses them from the next suggestion) or metadata (replaced whole).

        Refused, writing nothing: a budget below what was observed (the message has the numbers),
        a change that makes the definition invalid, an experiment a tuning run holds.
        """
        with holding(self.storage, self.id, "paretune update"):
            record = self.storage.update_experiment(self.id, name=name, budget=budget,
                                                    parallel_bandwidth=parallel_bandwidth, thresholds=thresholds,
                                                    metadata=metadata)
        self.session = TrialSession(self.storage, record.id, seed=self.session.seed)

    def archive(self) -> None:
        """Hide it from `paretune list` and stop its suggestions for good; its data stay readable."""
        with holding(self.storage, self.id, "paretune archive"):
            self.storage.set_experiment_state(self.id, "archived")

    def unarchive(self) -> None:
        """Undo `archive`: it suggests again while budget is left."""
        with holding(self.storage, self.id, "paretune unarchive"):
            self.storage.set_experiment_state(self.id, "active")
            self.storage.update_experiment(self.id)  # settles active/completed from the budget

    # -- read ---------------------------------------------------------------------------------
    def progress(self) -> Progress:
        return self.session.progress()

    def observations(self) -> list[ObservationRecord]:
        return self.storage.observations(self.id)

    def frontier(self) -> list[dict[str, Any]]:
        """The Pareto frontier: non-dominated full-cost completed observations meeting every
        threshold, by the first optimized metric; each point as `storage.report.point_record`."""
        record, points = frontier_points(self.storage, self.id)
        return [point_record(record.spec, point) for point in points]

    def best(self) -> list[dict[str, Any]]:
        """SigOpt's best assignments: with two optimized metrics, the frontier; with one, the best
        `num_solutions` diverse observations (default 1), best first. Only full-cost observations
        that meet every threshold count."""
        if len(self.spec.optimized_metrics) > 1:
            return self.frontier()
        chosen = optimizer.best_solutions(self.spec, self.storage.history(self.id))
        return [{"assignments": o.assignments, "values": o.values, "task": o.task} for o in chosen]

    def threshold_report(self) -> list[dict[str, Any]]:
        return self.storage.threshold_report(self.id)


class TrialRun(Run):
    """A run bound to a suggestion; leaving the block closes the trial through the session."""

    def __init__(self, session: TrialSession, trial: OpenTrial):
        assert trial.run_id is not None
        super().__init__(session.storage, trial.run_id)
        self.suggestion = Suggestion(trial.suggestion_id, trial.assignments, trial.task)
        self.metrics: dict[str, Any] = {}
        self._session = session
        self._trial = trial

    def log_metric(self, name: str, value: float, stddev: float | None = None) -> None:
        """Kept until the block ends, when it becomes part of the observation (with its measured
        standard deviation, as SigOpt's `log_metric(name, value, stddev)`)."""
        self.metrics[name] = value if stddev is None else {"value": value, "value_stddev": stddev}

    def log_metrics(self, metrics: dict[str, Any]) -> None:
        """Kept until the block ends, when they become the observation in one transaction."""
        self.metrics.update(metrics)

    def log_checkpoint(self, epoch: int, values: dict[str, float]) -> bool:
        """Record one evaluation's values and answer whether to stop (the experiment's training
        monitor and early stopping); a trial told to stop closes `stopped` when the block ends."""
        return self._session.checkpoint(self._trial, epoch, values).should_stop

    def _cancel(self, reason: str) -> None:
        self._session.cancel([self._trial], reason)

    def _close(self) -> None:
        if self.failure is not None:
            self._session.fail(self._trial, self.failure)
        else:
            self._session.complete(self._trial, self.metrics)

    def _swallows(self, error: BaseException | None) -> bool:
        """A TrialFailure is an outcome, and the loop goes on; anything else is a bug."""
        return isinstance(error, TrialFailure)


def load_spec(spec: ExperimentSpec | dict[str, Any] | str | Path) -> ExperimentSpec:
    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, dict):
        return ExperimentSpec.model_validate(spec)
    return ExperimentSpec.from_file(spec)


def create_experiment(
    spec: ExperimentSpec | dict[str, Any] | str | Path, *, db: str | None = None, storage: Storage | None = None,
    allow_duplicate_name: bool = False,
) -> Experiment:
    """Create an experiment from a definition (object, dict, or YAML/JSON path).

    The definition is validated before the store is opened: a refused one creates no file.
    """
    definition = load_spec(spec)
    store = storage or DuckDBStorage(db)
    return Experiment(store, store.create_experiment(definition, allow_duplicate_name=allow_duplicate_name).id)


def delete_experiment(ref: int | str, *, db: str | None = None, storage: Storage | None = None) -> None:
    """Delete an experiment and everything recorded for it; other experiments are not touched."""
    store = storage or DuckDBStorage(db)
    experiment_id = store.get_experiment(ref).id
    with holding(store, experiment_id, "paretune delete"):
        store.delete_experiment(experiment_id)


@contextmanager
def holding(storage: Storage, experiment_id: int, purpose: str) -> Iterator[None]:
    """Hold the experiment as a tuning run does, for one change: refused (ExperimentBusy, naming
    the holder) while another process tunes it."""
    files = getattr(storage, "files", None)
    if files is None:
        yield
        return
    with experiment_lease(files, experiment_id, wait_s=0, holder=holder_description(purpose)):
        yield


def open_experiment(ref: int | str, *, db: str | None = None, storage: Storage | None = None,
                    seed: int | None = None) -> Experiment:
    """Open an existing experiment by id or name."""
    store = storage or DuckDBStorage(db)
    return Experiment(store, store.get_experiment(ref).id, seed=seed)

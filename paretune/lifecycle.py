"""The trial lifecycle, in one place for every front end.

    ask -> suggestion `open` (with its run) -> the trial runs once, each checkpoint answered
    (stop or go on) -> close: the run, its metrics and the observation in one transaction ->
    `completed` | `stopped` (told to stop before its last checkpoint) | `failed` | `expired` |
    `cancelled`; a closed trial's observation may later be corrected (`revise`) or deleted
    (`withdraw`: its suggestion ends `cancelled`)

The tuning flow, the Python ask/tell API, SigOpt's run loop and the CLI all go through a
`TrialSession`, so they share:

- seeding: suggestions are reproducible by default, from a seed derived from the experiment;
- metric cleaning (`clean_metrics`): numpy and torch scalars are numbers, a NaN or infinity is
  a divergence, metrics the experiment does not declare stay on the run;
- failure reasons, written by `paretune.failures.Failure` alone;
- the atomic close of a trial, by the storage contract's `record_observation`;
- early stopping (`paretune.stopping`): each checkpoint's answer is decided once from the
  store's curves and kept there, so every front end, and a resumed flow, answers the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paretune import optimizer, stopping
from paretune.optimizer import ExperimentSpec, MetricValueError, metric_number
from paretune.environment import capture_environment
from paretune.failures import Failure, FailureKind
from paretune.storage import ExperimentRecord, ObservationRecord, Progress, RunEnvironment, Storage, StorageError
from paretune.storage import observation_edits

# Upper bound of one batch of suggestions, whatever the budget: a batch is computed in one call.
MAX_BATCH = 1000


# -- metric cleaning -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CleanMetrics:
    observed: dict[str, float]  # the experiment's metrics: the observation
    extra: dict[str, float]  # other metrics the objective reported: kept on the trial's run
    stddevs: dict[str, float] = field(default_factory=dict)  # measured standard deviations, by metric


class MetricsRefused(ValueError):
    """What an objective or a caller reported cannot be an observation; `failure` says why."""

    def __init__(self, failure: Failure):
        super().__init__(failure.reason)
        self.failure = failure


def clean_metrics(spec: ExperimentSpec, reported: Any, *, keep_undeclared: bool = True) -> CleanMetrics:
    """The one metric cleaner. Raises MetricsRefused with a `diverged` failure for a NaN or
    infinity, an `invalid_metrics` one for anything else unusable (not a mapping, a non-number,
    a missing optimized or constraint metric, an undeclared metric when not kept).

    Values come as `{name: number}`, where a number may also be SigOpt's value object
    `{"value": v, "value_stddev": s}`, or as SigOpt's list `[{"name": n, "value": v,
    "value_stddev": s}, ...]`.
    """
    def refuse(kind: FailureKind, detail: str) -> MetricsRefused:
        return MetricsRefused(Failure(kind, detail))

    if isinstance(reported, (list, tuple)) and reported and all(isinstance(item, Mapping) for item in reported):
        reported = _values_by_name(reported, refuse)
    if not isinstance(reported, Mapping) or not reported:
        shown = type(reported).__name__ if not isinstance(reported, Mapping) else "an empty mapping"
        raise refuse(FailureKind.INVALID_METRICS, f"metrics must be a mapping of metric name to number, got {shown}")
    numbers: dict[str, float] = {}
    stddevs: dict[str, float] = {}
    for name, value in reported.items():
        try:
            if isinstance(value, Mapping):
                unknown = sorted(set(value) - {"value", "value_stddev"})
                if "value" not in value or unknown:
                    raise MetricValueError(f"{name}: {dict(value)!r} is not a number nor SigOpt's "
                                           "{value, value_stddev}", not_finite=False)
                if value.get("value_stddev") is not None:
                    stddevs[str(name)] = metric_number(f"{name}.value_stddev", value["value_stddev"])
                value = value["value"]
            numbers[str(name)] = metric_number(str(name), value)
        except MetricValueError as error:
            kind = FailureKind.DIVERGED if error.not_finite else FailureKind.INVALID_METRICS
            raise refuse(kind, f"metric {error}") from None
    negative = sorted(name for name, stddev in stddevs.items() if stddev < 0)
    if negative:
        raise refuse(FailureKind.INVALID_METRICS, f"metric {negative[0]}.value_stddev: {stddevs[negative[0]]} is "
                                                  "negative; a standard deviation is >= 0")
    declared = {metric.name for metric in spec.metrics}
    undeclared = sorted(set(numbers) - declared)
    if undeclared and not keep_undeclared:
        raise refuse(FailureKind.INVALID_METRICS, f"metric {undeclared[0]}: the experiment has no such metric "
                                                  f"(it declares {', '.join(sorted(declared))})")
    missing = [m.name for m in spec.required_metrics if m.name not in numbers]
    if missing:
        raise refuse(FailureKind.INVALID_METRICS, f"metric {', '.join(missing)}: missing; every optimized and "
                                                  "constraint metric must be reported")
    return CleanMetrics({n: v for n, v in numbers.items() if n in declared},
                        {n: v for n, v in numbers.items() if n not in declared},
                        {n: v for n, v in stddevs.items() if n in declared})


def _values_by_name(items: Any, refuse: Any) -> dict[str, Any]:
    """SigOpt's list of value objects as `{name: {"value": v, "value_stddev": s}}`."""
    values: dict[str, Any] = {}
    for item in items:
        name = item.get("name")
        if not isinstance(name, str) or name in values:
            raise refuse(FailureKind.INVALID_METRICS, f"values: each item needs a distinct `name`, got {dict(item)!r}")
        values[name] = {key: item[key] for key in ("value", "value_stddev") if key in item}
    return values


# -- seeding ----------------------------------------------------------------------------------------
def suggestion_seed(base: int, suggestions_so_far: int) -> int:
    """The seed of the next suggestion: the same experiment replayed gets the same suggestions."""
    digest = hashlib.blake2b(f"{base}/{suggestions_so_far}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def experiment_seed(experiment: ExperimentRecord) -> int:
    digest = hashlib.blake2b(f"{experiment.id}/{experiment.name}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


# -- the session ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenTrial:
    """A suggestion handed out and not yet closed; `run_id` when its run is recorded, `task` the
    multitask fidelity to run it at."""

    suggestion_id: int
    assignments: dict[str, Any]
    run_id: int | None = None
    task: str | None = None


class TrialSession:
    """Asks for and closes the trials of one experiment, through a storage.

    `seed` replaces the experiment-derived base seed (for repeating a study in a new store).
    """

    def __init__(self, storage: Storage, experiment_id: int, *, seed: int | None = None):
        self.storage = storage
        self.experiment = storage.get_experiment(experiment_id)
        self.spec = self.experiment.spec
        self.seed = experiment_seed(self.experiment) if seed is None else seed

    @property
    def experiment_id(self) -> int:
        return self.experiment.id

    def progress(self) -> Progress:
        return self.storage.progress(self.experiment_id)

    # -- ask --------------------------------------------------------------------------------------
    def ask(self, n: int = 1, *, with_runs: bool = False, run_metadata: dict[str, Any] | None = None,
            environment: RunEnvironment | None = None) -> list[OpenTrial]:
        """`n` new suggestions, recorded open (and, `with_runs`, a running run for each), each
        with the task to run it at when the experiment has tasks.

        Refused beyond the budget, counted in cost units: open suggestions count, since each will
        be observed.
        """
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BATCH:
            raise StorageError(f"ask for between 1 and {MAX_BATCH} suggestions at once, not {n!r}")
        with self.storage.batch():  # one consistent read; unless the caller holds the file, not held meanwhile
            self._check_budget(n)
            made, history, pending = self.search_inputs()
        # SigOpt's `type: random`: every suggestion is drawn the way the search's start-up draws.
        startup = {"n_startup": made + n} if self.spec.type == "random" else {}
        proposals = optimizer.propose(self.spec, history, pending, n=n, seed=suggestion_seed(self.seed, made),
                                      issued=made, **startup)
        with self.storage.batch():
            self._check_budget(n)  # again: another process may have asked meanwhile
            suggestions = self.storage.create_suggestions(self.experiment_id, [p.assignments for p in proposals],
                                                          tasks=[p.task for p in proposals])
            where = (environment or capture_environment()) if with_runs else None
            return [OpenTrial(s.id, s.assignments,
                              self._open_run(s.id, s.assignments, where, run_metadata) if where else None, s.task)
                    for s in suggestions]

    def search_inputs(self) -> tuple[int, list[optimizer.Observation], list[dict[str, Any]]]:
        """What the search is given: how many suggestions were made, the history, the pending
        assignments. A long-lived server overrides it to keep the history in memory."""
        made = len(self.storage.list_suggestions(self.experiment_id))
        return made, self.storage.history(self.experiment_id), self.storage.pending(self.experiment_id)

    def open_at(self, assignments: dict[str, Any], *, task: str | None = None, with_run: bool = False,
                run_metadata: dict[str, Any] | None = None) -> OpenTrial:
        """A trial at the caller's assignments, recorded open like any suggestion (SigOpt's
        observation from assignments, its queued suggestions); within the budget."""
        with self.storage.batch():
            self._check_budget(1)
            (suggestion,) = self.storage.create_suggestions(self.experiment_id, [assignments], tasks=[task])
            run_id = self._open_run(suggestion.id, suggestion.assignments, capture_environment(),
                                    run_metadata) if with_run else None
        return OpenTrial(suggestion.id, suggestion.assignments, run_id, suggestion.task)

    def _check_budget(self, n: int) -> None:
        """Refuse `n` more suggestions when even the cheapest trial would overrun the budget."""
        progress = self.progress()
        if progress.remaining is None:
            return
        if n * self.spec.least_trial_cost > progress.remaining + 1e-9:
            fractional = self.spec.tasks or self.spec.training_monitor  # a cheap task or a stopped trial costs less
            left = f"{progress.remaining:g} cost units" if fractional else f"{progress.remaining:g} suggestion(s)"
            raise StorageError(
                f"experiment {self.experiment.name!r} has {left} left in its budget of {progress.budget} "
                f"({progress.observations} observed, {progress.open_suggestions} open); asked for {n}. Observe the "
                "open ones, or raise the budget"
            )

    def _open_run(self, suggestion_id: int, assignments: dict[str, Any], environment: RunEnvironment,
                  metadata: dict[str, Any] | None) -> int:
        run = self.storage.create_run(
            f"{self.experiment.name}#{suggestion_id}", parameters=assignments, experiment_id=self.experiment_id,
            suggestion_id=suggestion_id, metadata=environment.metadata() | (metadata or {}),
            git_commit=environment.git_commit, host=environment.host, device=environment.device,
        )
        return run.id

    # -- while it runs ----------------------------------------------------------------------------
    def started(self, trial: OpenTrial, worker: str | None, environment: RunEnvironment | None = None) -> None:
        """The trial began on `worker`; its run takes the worker's host, device and commit."""
        self.storage.start_trial(trial.suggestion_id, worker=worker, run_id=trial.run_id, environment=environment)

    def checkpoint(self, trial: OpenTrial, epoch: int, values: Mapping[str, Any]) -> stopping.StopDecision:
        """Store a checkpoint and answer it: should the trial stop, and which rules say so. A new
        one past `max_checkpoints` is refused, writing nothing: the training monitor bounds a trial
        (as on SigOpt; the flow ends a trial there before it reports more). An epoch reported
        again replaces its values (a retried task reports its epochs again)."""
        if trial.run_id is None:
            raise StorageError(f"suggestion {trial.suggestion_id} has no run to hold checkpoints")
        monitor = self.spec.training_monitor
        if monitor is None:
            self.storage.add_checkpoint(trial.run_id, epoch, dict(values))
            return stopping.StopDecision(False)
        with self.storage.batch():  # one hold of the file for the checkpoint and its answer
            reported = [c["epoch"] for c in self.storage.checkpoints(trial.run_id)]
            if epoch not in reported and len(reported) >= monitor.max_checkpoints:
                raise StorageError(f"suggestion {trial.suggestion_id} already has {monitor.max_checkpoints} "
                                   "checkpoints (the training monitor's max_checkpoints): close the trial")
            self.storage.add_checkpoint(trial.run_id, epoch, dict(values))
            count = len(reported) + (epoch not in reported)
            kept = self.storage.stop_decisions(trial.suggestion_id).get(count)
            if kept is None:
                decision = self._decide(trial, count)
                kept = self.storage.record_stop_decision(trial.suggestion_id, count, decision.should_stop,
                                                         decision.reasons)
        return stopping.StopDecision(*kept)

    def _decide(self, trial: OpenTrial, count: int) -> stopping.StopDecision:
        """The answer to the trial's checkpoint number `count`. Only a rung of Pareto early stopping
        compares the trial with others, so only a rung reads every trial's curve; elsewhere its own
        curve decides (convergence, `max_checkpoints`): with 10^4 trials of nine checkpoints,
        reading them all took a large share of a second (benchmarks/checkpoint_scale.py)."""
        curve = [c["values"] for c in self.storage.checkpoints(trial.run_id)]
        if not stopping.is_rung(self.spec, count):
            return stopping.decide(self.spec, curve, None, trial.suggestion_id, None)
        curves = self.storage.checkpoint_curves(self.experiment_id)
        assignments = self.storage.suggestion_assignments(self.experiment_id)
        peers = [stopping.RungEntry(other, points[count - 1], assignments[other]) for other, points in curves.items()
                 if other != trial.suggestion_id and len(points) >= count]
        every = list(curves.values())
        fixed = stopping.fixed_metrics(self.spec, every)
        growth = stopping.growth_to_end(self.spec, count, [stopping.TrialCurve(assignments[suggestion], points)
                                                           for suggestion, points in curves.items()], fixed or set())
        return stopping.decide(self.spec, curve, peers, trial.suggestion_id, fixed,
                               stopping.checkpoint_noise(self.spec, every), stopping.finished_values(self.spec, every),
                               growth, trial.assignments)

    def must_end(self, trial: OpenTrial, checkpoints: int) -> bool:
        """A trial that reaches `max_checkpoints` after it was told to stop ignored the answer:
        whoever runs it ends it there (and one that reports past it, at it)."""
        monitor = self.spec.training_monitor
        return (monitor is not None and checkpoints == monitor.max_checkpoints
                and self._told_to_stop_before(trial, monitor.max_checkpoints))

    def _told_to_stop_before(self, trial: OpenTrial, checkpoint: int) -> bool:
        return any(stop and count < checkpoint for count, (stop, _) in self.storage.stop_decisions(
            trial.suggestion_id).items())

    def _stopped_at(self, trial: OpenTrial) -> float | None:
        """The fidelity a trial told to stop before its last checkpoint reached; None otherwise."""
        monitor = self.spec.training_monitor
        if monitor is None or trial.run_id is None or not self._told_to_stop_before(trial, monitor.max_checkpoints):
            return None
        return stopping.fidelity(self.spec, max(1, len(self.storage.checkpoints(trial.run_id))))

    # -- tell -------------------------------------------------------------------------------------
    def complete(self, trial: OpenTrial | int, reported: Any, *, duration_s: float | None = None,
                 strict: bool = False, metadata: dict[str, Any] | None = None) -> ObservationRecord:
        """Close the trial with what it reported (or with metrics `clean_metrics` already cleaned,
        as a worker sends them).

        An objective's output (`strict=False`) that cannot be an observation closes the trial as
        failed, with the reason; a caller's (`strict=True`, ask/tell) is refused, writing nothing,
        so the caller can correct it. A trial told to stop early closes `stopped`.
        """
        trial = self._trial(trial)
        try:
            metrics = reported if isinstance(reported, CleanMetrics) else clean_metrics(
                self.spec, reported, keep_undeclared=trial.run_id is not None or not strict)
        except MetricsRefused as refused:
            if strict:
                advice = "; report the trial with failed=True" if refused.failure.kind is FailureKind.DIVERGED else ""
                raise StorageError(f"observation refused: {refused.failure.detail}{advice}") from None
            return self.fail(trial, refused.failure, duration_s=duration_s)
        return self.storage.record_observation(trial.suggestion_id, values=metrics.observed, duration_s=duration_s,
                                               run_id=trial.run_id, run_metrics=metrics.extra,
                                               value_stddevs=metrics.stddevs or None, metadata=metadata,
                                               stopped_at=self._stopped_at(trial))

    def fail(self, trial: OpenTrial | int, failure: Failure, *, duration_s: float | None = None,
             metadata: dict[str, Any] | None = None) -> ObservationRecord:
        trial = self._trial(trial)
        return self.storage.record_observation(trial.suggestion_id, failed=True, reason=failure.reason,
                                               duration_s=duration_s, run_id=trial.run_id, metadata=metadata)

    def cancel(self, trials: list[OpenTrial], reason: str) -> list[int]:
        """Close trials that will never report (their run was cancelled): `cancelled`, no observation."""
        return self.storage.cancel_suggestions(self.experiment_id, [t.suggestion_id for t in trials], reason)

    # -- after the close: SigOpt's observation update and delete (storage/observation_edits.py) ----------
    def revise(self, observation_id: int, reported: Any = None, *, failure: Failure | None = None,
               metadata: dict[str, Any] | None = None) -> ObservationRecord:
        """Correct a closed trial's outcome: what it `reported` (cleaned as any report is, and
        refused, writing nothing, when unusable) or its `failure`; `metadata`, when given,
        replaces the old. Its suggestion and run follow; its assignments stay."""
        if failure is not None:
            outcome: dict[str, Any] = {"values": None, "value_stddevs": None, "failed": True, "reason": failure.reason}
        else:
            metrics = clean_metrics(self.spec, reported, keep_undeclared=False)
            outcome = {"values": metrics.observed, "value_stddevs": metrics.stddevs, "failed": False, "reason": None}
        return observation_edits.revise_observation(
            self.storage, self.experiment_id, observation_id, metadata=metadata, **outcome)  # type: ignore[arg-type]

    def withdraw(self, observation_ids: list[int] | None = None) -> list[int]:
        """Delete observations (every one of the experiment's when None): the search no longer sees
        them, the budget gets them back, their suggestions end `cancelled`."""
        return observation_edits.delete_observations(
            self.storage, self.experiment_id, observation_ids)  # type: ignore[arg-type]

    def expire_leftovers(self) -> list[int]:
        """Close what a dead process left open: `expired`, their runs failed."""
        return self.storage.expire_open_suggestions(self.experiment_id)

    def _trial(self, trial: OpenTrial | int) -> OpenTrial:
        if isinstance(trial, OpenTrial):
            return trial
        if isinstance(trial, bool) or not isinstance(trial, int):
            raise StorageError(f"a suggestion is identified by its integer id, got {trial!r}")
        suggestion = self.storage.get_suggestion(trial)
        if suggestion.experiment_id != self.experiment_id:
            raise StorageError(f"suggestion {trial} belongs to experiment {suggestion.experiment_id}, "
                               f"not {self.experiment_id}")
        return OpenTrial(suggestion.id, suggestion.assignments, task=suggestion.task)

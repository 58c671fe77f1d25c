"""Ask/tell over the store, in SigOpt's words, for users who bring their own loop.

    experiment = paretune.create_experiment("experiments/demo.yaml")
    while not experiment.progress().done:
        suggestion = experiment.suggest()
        experiment.observe(suggestion, values=train(**suggestion.assignments))
    print(experiment.frontier())
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import optimizer
from optimizer import ExperimentSpec
from paretune.runs import Run
from storage import DuckDBStorage, ObservationRecord, Progress, Storage, StorageError


@dataclass(frozen=True)
class Suggestion:
    id: int
    assignments: dict[str, Any]


class Experiment:
    """One experiment in a store; every method reads or writes through that store."""

    def __init__(self, storage: Storage, experiment_id: int):
        self.storage = storage
        record = storage.get_experiment(experiment_id)
        self.id = record.id
        self.name = record.name
        self.spec = record.spec

    # -- ask ----------------------------------------------------------------------------------
    def suggest(self, *, seed: int | None = None) -> Suggestion:
        """A new suggestion from the optimizer, recorded as open until observed."""
        return self.suggest_batch(1, seed=seed)[0]

    def suggest_batch(self, n: int, *, seed: int | None = None) -> list[Suggestion]:
        """`n` diverse suggestions at once (for `n` parallel workers)."""
        already = len(self.storage.list_suggestions(self.id))
        batch = optimizer.suggest(
            self.spec,
            self.storage.history(self.id),
            self.storage.pending(self.id),
            n=n,
            seed=_derived_seed(self.id, already) if seed is None else seed,
        )
        return [Suggestion(r.id, r.assignments) for r in self.storage.create_suggestions(self.id, batch)]

    # -- tell ---------------------------------------------------------------------------------
    def observe(
        self,
        suggestion: Suggestion | int,
        *,
        values: dict[str, float] | None = None,
        failed: bool = False,
        reason: str | None = None,
        duration_s: float | None = None,
    ) -> ObservationRecord:
        """Report a suggestion's metric values, or `failed=True` with a `reason`.

        Refused, writing nothing: an unknown or already-observed suggestion, one from another
        experiment, a missing optimized/constraint metric, a metric the spec does not name, a
        NaN or infinite value.
        """
        suggestion_id = suggestion.id if isinstance(suggestion, Suggestion) else int(suggestion)
        if self.storage.get_suggestion(suggestion_id).experiment_id != self.id:
            raise StorageError(f"suggestion {suggestion_id} belongs to another experiment, not {self.id}")
        return self.storage.record_observation(
            suggestion_id, values=values, failed=failed, reason=reason, duration_s=duration_s
        )

    # -- SigOpt's run loop ------------------------------------------------------------------------
    def loop(self) -> Iterator[Run]:
        """Yield one run per suggestion until the budget is spent (SigOpt's `experiment.loop()`).

        Inside ``with run:``, `run.params` holds the assignments; metrics logged with
        `run.log_metric` become the observation when the block ends, and an exception (or a
        `paretune.failures.TrialFailure`) becomes a failed observation.
        """
        if self.spec.observation_budget is None:
            raise StorageError("loop() needs an observation_budget in the experiment definition")
        while not self.progress().done:
            suggestion = self.suggest()
            yield _TrialRun(self, suggestion)

    # -- read ---------------------------------------------------------------------------------
    def progress(self) -> Progress:
        return self.storage.progress(self.id)

    def observations(self) -> list[ObservationRecord]:
        return self.storage.observations(self.id)

    def frontier(self) -> list[dict[str, Any]]:
        """The Pareto frontier: non-dominated completed observations meeting every threshold."""
        return self.storage.frontier(self.id)

    def best(self) -> list[dict[str, Any]]:
        """SigOpt's best assignments: the frontier (for one metric, the best observation(s))."""
        return self.frontier()

    def threshold_report(self) -> list[dict[str, Any]]:
        return self.storage.threshold_report(self.id)


class _TrialRun(Run):
    """A run bound to a suggestion; closing it records the observation in the same store."""

    _swallow_trial_failures = True

    def __init__(self, experiment: Experiment, suggestion: Suggestion):
        super().__init__(
            experiment.storage,
            f"{experiment.name}#{suggestion.id}",
            experiment_id=experiment.id,
            suggestion_id=suggestion.id,
            parameters=suggestion.assignments,
        )
        self.suggestion = suggestion
        self._experiment = experiment
        self._started = time.monotonic()

    def __exit__(self, kind, error, tb):  # type: ignore[no-untyped-def]
        invalid = None
        if error is None and self.failure_reason is None:
            try:
                optimizer.validate_values(self._experiment.spec, self.metrics)
            except optimizer.ObservationError as problem:
                invalid = problem
                self.failure_reason = f"invalid metrics: {problem}"
        swallow = super().__exit__(kind, error, tb)
        if invalid is not None:
            raise StorageError(f"run {self.id} logged no valid observation, suggestion {self.suggestion.id} "
                               f"stays open: {invalid}")
        duration = time.monotonic() - self._started
        if self.failure_reason is None:
            self._experiment.storage.record_observation(
                self.suggestion.id, values=self.metrics, duration_s=duration, run_id=self.id
            )
        else:
            self._experiment.storage.record_observation(
                self.suggestion.id, failed=True, reason=self.failure_reason, duration_s=duration, run_id=self.id
            )
        return swallow

    def log_metric(self, name: str, value: float) -> None:
        if not math.isfinite(float(value)):
            self.log_failure(f"diverged: metric {name} is {value}")
            return
        super().log_metric(name, value)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.log_metric(name, value)


def _derived_seed(experiment_id: int, suggestions_so_far: int) -> int:
    """Reproducible suggestions: the same experiment replayed gets the same seeds."""
    return (experiment_id * 1_000_003 + suggestions_so_far * 7_919) % (2**32)


def load_spec(spec: ExperimentSpec | dict[str, Any] | str | Path) -> ExperimentSpec:
    if isinstance(spec, ExperimentSpec):
        return spec
    if isinstance(spec, dict):
        return ExperimentSpec.model_validate(spec)
    return ExperimentSpec.from_file(spec)


def create_experiment(
    spec: ExperimentSpec | dict[str, Any] | str | Path, *, db: str | None = None, storage: Storage | None = None
) -> Experiment:
    """Create an experiment from a definition (object, dict, or YAML/JSON path)."""
    store = storage or DuckDBStorage(db)
    return Experiment(store, store.create_experiment(load_spec(spec)).id)


def open_experiment(ref: int | str, *, db: str | None = None, storage: Storage | None = None) -> Experiment:
    """Open an existing experiment by id or name."""
    store = storage or DuckDBStorage(db)
    return Experiment(store, store.get_experiment(ref).id)

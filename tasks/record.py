"""The flow's writes to the store: opening or resuming an experiment, then each trial's life.

Only the flow process calls these (DuckDB has one writer). `prepare_experiment` is a Prefect
task, run once per flow run; the per-trial writes are plain functions on the scheduling hot
path, where a task run per write would cost more than the write itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from optimizer import ExperimentSpec
from storage import Storage, SuggestionRecord

# Keys a re-run may change without making it a different experiment.
_RUN_SETTINGS = ("observation_budget", "parallel_bandwidth")


@dataclass(frozen=True)
class PreparedExperiment:
    """The experiment a flow run works on, after leftovers of a dead run were expired."""

    experiment_id: int
    name: str
    spec: ExperimentSpec
    budget: int
    already_observed: int
    expired_suggestions: list[int]
    resumed: bool


class ExperimentMismatch(ValueError):
    """A spec file whose name matches a stored experiment with a different definition."""


def _definition(spec: ExperimentSpec) -> dict[str, Any]:
    return {key: value for key, value in spec.to_dict().items() if key not in _RUN_SETTINGS}


def objective_path(spec: ExperimentSpec) -> str:
    """`metadata.objective`, checked for shape; the error says what to write."""
    objective = (spec.metadata or {}).get("objective")
    if not isinstance(objective, str) or ":" not in objective:
        raise ValueError(
            f"experiment {spec.name!r}: metadata.objective must name the function trials call, "
            f"as 'package.module:function' (e.g. 'paretune.testfunctions:size_vs_error'); got {objective!r}"
        )
    return objective


@task(name="prepare-experiment", cache_policy=NO_CACHE)
def prepare_experiment(
    storage: Storage, spec_path: str | None, experiment: str | None, budget: int | None
) -> PreparedExperiment:
    """Create the experiment from a spec file, or resume the stored one (same name or id).

    Resuming expires the suggestions a dead run left open; what it observed is kept and counts
    toward the budget.
    """
    logger = get_run_logger()
    if spec_path is not None:
        spec = ExperimentSpec.from_file(spec_path)
        stored = [e for e in storage.list_experiments() if e.name == spec.name]
        if stored and _definition(stored[-1].spec) != _definition(spec):
            raise ExperimentMismatch(
                f"{spec_path}: the store already holds experiment {spec.name!r} (id {stored[-1].id}) with a "
                "different definition; rename the experiment in the file to start a new one"
            )
        record = stored[-1] if stored else storage.create_experiment(spec)
        resumed = bool(stored)
    else:
        assert experiment is not None
        record = storage.get_experiment(experiment)
        spec, resumed = record.spec, True
    objective_path(spec)
    total = budget or spec.observation_budget
    if total is None:
        raise ValueError(
            f"experiment {spec.name!r} has no observation_budget; set it in the spec or pass options.budget"
        )
    expired = storage.expire_open_suggestions(record.id)
    progress = storage.progress(record.id)
    if resumed:
        logger.info("resuming experiment %s (id %s): %s of %s observations done, %s open suggestions expired",
                    spec.name, record.id, progress.observations, total, len(expired))
    return PreparedExperiment(record.id, spec.name, spec, total, progress.observations, expired, resumed)


def open_suggestion(storage: Storage, experiment_id: int, assignments: dict[str, Any]) -> SuggestionRecord:
    """Record a suggestion about to be tried (its assignments as the store validated them)."""
    (suggestion,) = storage.create_suggestions(experiment_id, [assignments])
    return suggestion


def open_run(storage: Storage, experiment_id: int, suggestion_id: int, assignments: dict[str, Any],
             prefect_task_run_id: str) -> int:
    """Record the run trying a suggestion, linked to its Prefect task run; return the run id."""
    run = storage.create_run(f"trial-{suggestion_id}", parameters=assignments, experiment_id=experiment_id,
                             suggestion_id=suggestion_id, metadata={"prefect_task_run_id": prefect_task_run_id})
    return run.id


def trial_started(storage: Storage, suggestion_id: int, run_id: int, worker: str | None) -> None:
    storage.mark_suggestion_started(suggestion_id, worker)
    if worker:
        storage.log_run_metadata(run_id, {"worker": worker})


def close_trial(
    storage: Storage,
    suggestion_id: int,
    run_id: int,
    values: dict[str, float] | None,
    failure_reason: str | None,
    duration_s: float | None,
    unobserved: dict[str, float] | None = None,
) -> None:
    """Finish the run (with every metric reported, `unobserved` ones too), then close the
    suggestion with its observation of the experiment's metrics (the durable step, last)."""
    if failure_reason is None:
        assert values is not None
        storage.log_run_metrics(run_id, values | (unobserved or {}))
        storage.finish_run(run_id, "completed")
        storage.record_observation(suggestion_id, values=values, duration_s=duration_s, run_id=run_id)
    else:
        storage.finish_run(run_id, "failed", failure_reason)
        storage.record_observation(suggestion_id, failed=True, reason=failure_reason, duration_s=duration_s,
                                   run_id=run_id)

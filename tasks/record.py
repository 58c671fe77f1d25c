"""Which experiment a tuning run works on: checked before anything starts, then prepared.

`plan_tune` validates a request without writing anything (the command line calls it before
Prefect or Dask start, so bad input costs a second and one message); the flow's tasks then
create or resume the experiment and, once the run holds the experiment's lease, expire what a
dead run left open and store the budget in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from paretune.optimizer import ExperimentSpec, SpecError
from paretune.optimizer.spec import MAX_OBSERVATION_BUDGET
from paretune.trial import ObjectiveImportError, check_objective_allowed, load_objective
from paretune.storage import DuckDBStorage, ExperimentRecord, Storage, StorageError
from paretune.lifecycle import TrialSession
from paretune.storage.files import DatabaseFiles

# Keys a re-run may change without making it a different experiment.
_RUN_SETTINGS = ("observation_budget", "parallel_bandwidth")


class TuneRequestError(ValueError):
    """A tuning request that cannot run; the message says what to change."""


@dataclass(frozen=True)
class TunePlan:
    """A checked request: the definition, the stored experiment it resumes (if any), the budget."""

    spec: ExperimentSpec
    experiment_id: int | None
    budget: int
    objective: str


@dataclass(frozen=True)
class PreparedExperiment:
    """The experiment a flow run works on, after leftovers of a dead run were expired."""

    experiment_id: int
    name: str
    spec: ExperimentSpec
    budget: int
    already_spent: float  # of the budget, in cost units (observations, without tasks)
    expired_suggestions: list[int]
    resumed: bool


def _definition(spec: ExperimentSpec) -> dict[str, Any]:
    return {key: value for key, value in spec.to_dict().items() if key not in _RUN_SETTINGS}


def objective_path(spec: ExperimentSpec) -> str:
    """`metadata.objective`, checked for shape; the error says what to write."""
    objective = (spec.metadata or {}).get("objective")
    if not isinstance(objective, str) or ":" not in objective:
        raise TuneRequestError(
            f"experiment {spec.name!r}: metadata.objective must name the function trials call, "
            f"as 'package.module:function' (e.g. 'paretune.testfunctions:size_vs_error'); got {objective!r}"
        )
    return objective


def plan_tune(spec_path: str | None, experiment: str | None, db_path: str, budget: int | None,
              *, import_objective: bool) -> TunePlan:
    """Check a tuning request, reading the store read-only; raise TuneRequestError saying what is wrong.

    `import_objective`: import it here too (a local cluster runs this machine's code).
    """
    try:
        files = DatabaseFiles.of(db_path)
        exists = files.inspect(for_writing=True)
        if spec_path is not None:
            spec = ExperimentSpec.from_file(spec_path)
            record = _stored_same_name(db_path, spec, spec_path) if exists else None
        else:
            if not exists:
                raise TuneRequestError(f"no database at {files.path}: nothing to resume; give a spec file instead")
            with DuckDBStorage(db_path, read_only=True) as storage:
                record = storage.get_experiment(str(experiment))
            spec = record.spec
    except (SpecError, StorageError) as error:
        raise TuneRequestError(str(error)) from None
    except OSError as error:
        raise TuneRequestError(f"{error.filename}: {error.strerror}") from None
    if record is not None and record.state == "archived":
        raise TuneRequestError(f"experiment {record.name!r} (id {record.id}) is archived: it suggests nothing more; "
                               f"`paretune unarchive {record.id}` to tune it again (its data stay readable either way)")
    total = budget or (record.budget if record is not None else None) or spec.observation_budget
    if total is None:
        raise TuneRequestError(f"experiment {spec.name!r} has no observation_budget; set it in the spec or pass "
                               "--budget")
    if total > MAX_OBSERVATION_BUDGET:
        raise TuneRequestError(f"budget {total} is above the maximum of {MAX_OBSERVATION_BUDGET}")
    objective = objective_path(spec)
    try:
        check_objective_allowed(objective)
        if import_objective:
            load_objective(objective)
    except ObjectiveImportError as error:
        raise TuneRequestError(str(error)) from None
    return TunePlan(spec, None if record is None else record.id, total, objective)


def _stored_same_name(db_path: str, spec: ExperimentSpec, spec_path: str) -> ExperimentRecord | None:
    """The stored experiment a definition file resumes: the one of its name, if its definition matches."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        same = [e for e in storage.list_experiments() if e.name == spec.name]
    if not same:
        return None
    if len(same) > 1:
        raise TuneRequestError(f"{len(same)} experiments are named {spec.name!r} (ids "
                               f"{', '.join(str(e.id) for e in same)}); pass --experiment ID to choose one")
    if _definition(same[0].spec) != _definition(spec):
        raise TuneRequestError(
            f"{spec_path}: the store already holds experiment {spec.name!r} (id {same[0].id}) with a different "
            "definition; rename the experiment in the file to start a new one, or pass --experiment "
            f"{same[0].id} to resume the stored one"
        )
    return same[0]


@task(name="prepare-experiment", cache_policy=NO_CACHE)
def prepare_experiment(storage: Storage, plan: TunePlan) -> ExperimentRecord:
    """Create the planned experiment, or open the stored one it resumes."""
    if plan.experiment_id is not None:
        return storage.get_experiment(plan.experiment_id)
    return storage.create_experiment(plan.spec)


@task(name="resume-experiment", cache_policy=NO_CACHE)
def resume_experiment(storage: Storage, record: ExperimentRecord, budget: int) -> PreparedExperiment:
    """With the experiment's lease held: expire what a dead run left open and store the budget in force.

    What a dead run observed is kept and counts toward the budget.
    """
    expired = TrialSession(storage, record.id).expire_leftovers()
    if budget != record.budget:
        storage.set_observation_budget(record.id, budget)
    progress = storage.progress(record.id)
    resumed = progress.observations > 0 or bool(expired)
    if resumed:
        get_run_logger().info("resuming experiment %s (id %s): %s of %s observations done, %s open suggestions expired",
                              record.name, record.id, progress.observations, budget, len(expired))
    return PreparedExperiment(record.id, record.name, record.spec, budget, progress.spent, expired, resumed)

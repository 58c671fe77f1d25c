"""Add observations to an existing experiment: the body of the scheduled `nightly-sweep` deployment.

When it meets a running tune of the same experiment, it is refused at once (one run tunes an
experiment at a time) and ends Failed with the other run's pid, host and flow run named; set
`options.wait_for_experiment_s` to wait for that run instead. Tunes of other experiments in the
same file are not in its way.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.states import State
from pydantic import Field

from paretune.flows.tune import ExperimentSource, TuneOptions, TuneResult, tune
from paretune.storage import DuckDBStorage, default_db_path


@flow(name="nightly-sweep")
def nightly_sweep(
    experiment: str,
    n_observations: Annotated[int, Field(ge=1)] = 10,
    db_path: str | None = None,
    options: TuneOptions = TuneOptions(),
) -> TuneResult | State:
    """Run `n_observations` more trials of a stored experiment (id or name): its budget grows by that much."""
    db_path = db_path or default_db_path()
    with DuckDBStorage(db_path, read_only=True) as storage:
        record = storage.get_experiment(experiment)
        observed = storage.progress(record.id).observations
    target = options.model_copy(update={"budget": observed + n_observations})
    return tune(ExperimentSource(experiment=str(record.id)), db_path, target, return_state=True)

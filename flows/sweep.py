"""Add observations to an existing experiment: the body of the scheduled `nightly-sweep` deployment."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from pydantic import Field

from flows.tune import ExperimentSource, TuneOptions, TuneResult, tune
from storage import DuckDBStorage, default_db_path


@flow(name="nightly-sweep")
def nightly_sweep(
    experiment: str,
    n_observations: Annotated[int, Field(ge=1)] = 10,
    db_path: str | None = None,
    options: TuneOptions = TuneOptions(),
) -> TuneResult:
    """Run `n_observations` more trials of a stored experiment (id or name), past its budget if need be."""
    db_path = db_path or default_db_path()
    with DuckDBStorage(db_path, read_only=True) as storage:
        record = storage.get_experiment(experiment)
        observed = storage.progress(record.id).observations
    target = options.model_copy(update={"budget": observed + n_observations})
    return tune(ExperimentSource(experiment=str(record.id)), db_path, target)

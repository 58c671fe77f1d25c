"""Correcting and deleting observations: the lifecycle's `revise`/`withdraw` on a real DuckDB
file, and the server's in-memory history kept equal to the store's through them."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from paretune.failures import Failure
from paretune.lifecycle import MetricsRefused, TrialSession
from paretune.optimizer import ExperimentSpec
from paretune.server.app import create_app
from paretune.storage import DuckDBStorage, StorageError
from paretune.storage.api_records import create_token
from paretune.storage.observation_edits import WITHDRAWN

DEFINITION = {"name": "edits", "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
              "metrics": [{"name": "y", "objective": "maximize"}, {"name": "z", "objective": "minimize"},
                          {"name": "note", "strategy": "store"}], "observation_budget": 3}


def counted(db: Path) -> dict[str, int]:
    """What the published copy holds, read apart from the code under test."""
    with DuckDBStorage(db, read_only=True) as storage:
        (row,) = storage.query("SELECT (SELECT count(*) FROM observations) AS observations, "
                               "(SELECT count(*) FROM observation_values) AS observation_values, "
                               "(SELECT count(*) FROM suggestions) AS suggestions")
    return row


def closed_trials(db: Path, n: int) -> tuple[DuckDBStorage, TrialSession, list[int]]:
    storage = DuckDBStorage(db)
    experiment = storage.create_experiment(ExperimentSpec.model_validate(DEFINITION))
    session = TrialSession(storage, experiment.id)
    ids = [session.complete(trial, {"y": i, "z": 10 - i, "note": 0.5}, strict=True).id
           for i, trial in enumerate(session.ask(n))]
    return storage, session, ids


def test_revise_replaces_the_outcome_and_the_suggestion_follows(tmp_path: Path) -> None:
    db = tmp_path / "edits.duckdb"
    storage, session, (first, second) = closed_trials(db, 2)
    revised = session.revise(first, [{"name": "y", "value": np.float32(7.5), "value_stddev": 0.25},
                                     {"name": "z", "value": 3}], metadata={"fixed": "by hand"})
    assert revised.values == {"y": 7.5, "z": 3.0} and revised.value_stddevs == {"y": 0.25}
    assert revised.metadata == {"fixed": "by hand"} and storage.get_suggestion(revised.suggestion_id).state == "completed"

    failed = session.revise(second, failure=Failure.from_reason("out_of_memory: 80 GiB"))
    assert failed.failed and failed.values is None and failed.failure_reason.startswith("out_of_memory")
    assert failed.metadata == {} and storage.get_suggestion(failed.suggestion_id).state == "failed"
    again = session.revise(second, {"y": 1, "z": 1, "note": 2})  # and back; metadata kept when not given
    assert again.values == {"y": 1.0, "z": 1.0, "note": 2.0} and not again.failed
    assert counted(db)["observation_values"] == 2 + 3
    storage.close()


def test_a_trials_run_follows_its_observation(tmp_path: Path) -> None:
    storage = DuckDBStorage(tmp_path / "edits.duckdb")
    session = TrialSession(storage, storage.create_experiment(ExperimentSpec.model_validate(DEFINITION)).id)
    (trial,) = session.ask(1, with_runs=True)
    observation = session.complete(trial, {"y": 1, "z": 2, "loss": 0.3})
    failed = session.revise(observation.id, failure=Failure.from_reason("diverged: NaN loss at step 40"))
    run = storage.get_run(trial.run_id)
    assert run.status == "failed" and run.failure_reason.startswith("diverged")
    session.revise(observation.id, {"y": 5, "z": 6})
    run = storage.get_run(trial.run_id)
    assert (run.status, run.failure_reason) == ("completed", None) and failed.run_id == run.id
    assert run.metrics == {"y": 5.0, "z": 6.0, "loss": 0.3}  # what the run logged besides stays
    storage.close()


def test_refused_revisions_write_nothing(tmp_path: Path) -> None:
    db = tmp_path / "edits.duckdb"
    storage, session, (first,) = closed_trials(db, 1)
    other = TrialSession(storage, storage.create_experiment(ExperimentSpec.model_validate(DEFINITION | {
        "name": "other"})).id)
    before = storage.observations(session.experiment_id)
    with pytest.raises(MetricsRefused, match="y"):
        session.revise(first, {"y": float("nan"), "z": 1})
    with pytest.raises(MetricsRefused, match="missing"):
        session.revise(first, {"y": 1})
    with pytest.raises(MetricsRefused, match="w"):
        session.revise(first, {"y": 1, "z": 1, "w": 1})
    with pytest.raises(StorageError, match=f"no observation {first} in experiment {other.experiment_id}"):
        other.revise(first, {"y": 1, "z": 1})
    with pytest.raises(StorageError, match="no observation 999"):
        session.withdraw([first, 999])
    assert storage.observations(session.experiment_id) == before
    storage.close()


def test_withdraw_deletes_and_gives_the_budget_back(tmp_path: Path) -> None:
    db = tmp_path / "edits.duckdb"
    storage, session, ids = closed_trials(db, 3)
    assert storage.get_experiment(session.experiment_id).state == "completed"  # the budget of 3 is spent
    assert session.withdraw([ids[1]]) == [ids[1]]
    assert [o.id for o in storage.observations(session.experiment_id)] == [ids[0], ids[2]]
    assert storage.get_experiment(session.experiment_id).state == "active"
    states = [s.state for s in storage.list_suggestions(session.experiment_id)]
    assert states == ["completed", "cancelled", "completed"]
    assert len(session.ask(1)) == 1  # budget back: one more trial
    assert session.withdraw() == [ids[0], ids[2]]
    assert counted(db) == {"observations": 0, "observation_values": 0, "suggestions": 4}
    assert storage.progress(session.experiment_id).open_suggestions == 1  # the open one is untouched
    storage.close()


@pytest.mark.slow
def test_the_servers_history_follows_corrections_and_deletes(tmp_path: Path) -> None:
    db = tmp_path / "edits.duckdb"
    storage, session, ids = closed_trials(db, 3)
    experiment_id = session.experiment_id
    storage.update_experiment(experiment_id, budget=10)
    _, token = create_token(storage, "tests")
    storage.close()
    app = create_app(str(db), protect_dashboard=False)
    base = f"/v1/experiments/{experiment_id}"
    with TestClient(app) as client:
        client.auth = (token, "")
        assert client.post(f"{base}/suggestions").status_code == 200  # the server loads the history
        cache = app.service._caches[experiment_id]  # type: ignore[attr-defined]
        changed = client.put(f"{base}/observations/{ids[0]}", json={"values": [{"name": "y", "value": 99},
                                                                                {"name": "z", "value": 0}]})
        assert changed.status_code == 200, changed.text
        assert client.put(f"{base}/observations/{ids[2]}", json={"failed": True, "values": None}).status_code == 200
        assert client.delete(f"{base}/observations/{ids[1]}").status_code == 204
        with DuckDBStorage(db, read_only=True) as published:
            fresh = published.history(experiment_id)
        assert [o.values for o in fresh] == [{"y": 99.0, "z": 0.0}, None]
        assert cache.history == fresh and cache.ids == [ids[0], ids[2]]
        assert client.post(f"{base}/suggestions").status_code == 200  # the next search reads the cache as is
        assert cache.history == fresh


KILLED_BETWEEN = """
import os, signal, sys
from paretune.lifecycle import TrialSession
from paretune.storage import DuckDBStorage
storage = DuckDBStorage(sys.argv[1])
session = TrialSession(storage, int(sys.argv[2]))
transaction, begun = storage._transaction, []
def dies_at_the_second(**options):
    begun.append(1)
    if len(begun) == 2:  # the first transaction of the delete committed, the second not begun
        os.kill(os.getpid(), signal.SIGKILL)
    return transaction(**options)
storage._transaction = dies_at_the_second
session.withdraw([int(sys.argv[3])])
"""


def test_a_delete_killed_halfway_leaves_a_withdrawn_failure_that_deleting_again_removes(tmp_path: Path) -> None:
    db = tmp_path / "edits.duckdb"
    storage, session, (kept, doomed) = closed_trials(db, 2)
    storage.close()
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN, str(db), str(session.experiment_id), str(doomed)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with DuckDBStorage(db) as storage:
        halfway = {o.id: o for o in storage.observations(session.experiment_id)}
        assert halfway[doomed].failed and halfway[doomed].failure_reason == WITHDRAWN and halfway[doomed].values is None
        assert halfway[kept].values == {"y": 0.0, "z": 10.0, "note": 0.5}
        assert [s.state for s in storage.list_suggestions(session.experiment_id)] == ["completed", "cancelled"]
        assert TrialSession(storage, session.experiment_id).withdraw([doomed]) == [doomed]
        assert [o.id for o in storage.observations(session.experiment_id)] == [kept]

"""Managing experiments from Python and the CLI: update, archive, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

import paretune
from paretune.api import delete_experiment
from paretune.lifecycle import TrialSession
from paretune.storage import DuckDBStorage, StorageError
from paretune.storage.files import DatabaseFiles, ExperimentBusy, experiment_lease, holder_description
from server_fixtures import paretune as cli

TABLES = {  # every table holding an experiment's rows, with how to pick them
    "experiments": "id = {e}",
    "experiment_metrics": "experiment_id = {e}",
    "experiment_parameters": "experiment_id = {e}",
    "suggestions": "experiment_id = {e}",
    "observations": "experiment_id = {e}",
    "observation_values": "observation_id IN (SELECT id FROM observations WHERE experiment_id = {e})",
    "runs": "experiment_id = {e}",
    "run_metrics": "run_id IN (SELECT id FROM runs WHERE experiment_id = {e})",
    "checkpoints": "run_id IN (SELECT id FROM runs WHERE experiment_id = {e})",
    "queued_suggestions": "experiment_id = {e}",
    "stop_decisions": "suggestion_id IN (SELECT id FROM suggestions WHERE experiment_id = {e})",
}


def definition(name: str) -> dict:
    return {"name": name, "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
            "metrics": [{"name": "exact", "objective": "maximize", "threshold": 50.0},
                        {"name": "size", "objective": "minimize"}],
            "observation_budget": 10, "metadata": {"objective": "paretune.testfunctions:size_vs_error"}}


def filled(db: Path, name: str, observed: int = 3) -> paretune.Experiment:
    """An experiment with observations, a failure, an open suggestion, runs and checkpoints."""
    experiment = paretune.create_experiment(definition(name), db=str(db))
    for i in range(observed):
        experiment.observe(experiment.suggest(), values={"exact": 40 + 10 * i, "size": 5 - i})
    experiment.observe(experiment.suggest(), failed=True, reason="out_of_memory")
    for run in experiment.loop():
        with run:
            run.log_checkpoint(0, {"exact": 1.0})
            run.log_metrics({"exact": 70.0, "size": 2.0, "extra": 1.0})
        break
    open_trial = experiment.suggest()  # left open, with an early-stopping answer kept for it
    experiment.storage.record_stop_decision(open_trial.id, 1, False, {})
    return experiment


def rows(db: Path, experiment_id: int) -> dict[str, list]:
    with DuckDBStorage(db, read_only=True) as storage:
        return {table: sorted(map(repr, (tuple(r.values()) for r in storage.query(
            f"SELECT * FROM {table} WHERE {where.format(e=experiment_id)}"))))
                for table, where in TABLES.items()}


def test_update_changes_what_the_search_uses_and_refuses_a_budget_below_observed(tmp_path: Path) -> None:
    db = tmp_path / "manage.duckdb"
    experiment = filled(db, "tune-me")
    before = rows(db, experiment.id)
    with pytest.raises(StorageError, match=r"budget 3 is below .* 5 observation\(s\), 5 of its budget of 10 spent"):
        experiment.update(budget=3, thresholds={"exact": 60.0})
    with pytest.raises(StorageError, match="store|threshold"):
        experiment.update(thresholds={"nope": 1.0})
    assert rows(db, experiment.id) == before  # refused: nothing written

    experiment.update(thresholds={"exact": 60.0}, budget=20, parallel_bandwidth=3, name="tuned",
                      metadata={"team": "nlp"})
    session = TrialSession(DuckDBStorage(str(db)), experiment.id)  # what the flow and the server build per turn
    assert session.spec.metrics[0].threshold == 60.0 and session.spec.parallel_bandwidth == 3
    assert session.experiment.name == "tuned" and session.experiment.budget == 20
    assert session.spec.metadata == {"team": "nlp"}
    with DuckDBStorage(db, read_only=True) as storage:
        (row,) = storage.query("SELECT threshold FROM experiment_metrics WHERE experiment_id = ? AND name = 'exact'",
                               [experiment.id])
        assert row["threshold"] == 60.0
        met = {r["observation_id"]: r["meets_all"] for r in storage.threshold_report(experiment.id)}
    assert sum(met.values()) == 2  # 60 and the run's 70 meet the new threshold; 40 and 50 do not


def test_cli_update_archive_and_list(tmp_path: Path) -> None:
    db = tmp_path / "manage.duckdb"
    experiment = filled(db, "cli-managed")
    done = cli("update", str(experiment.id), "--budget", "12", "--threshold", "exact=60", "--parallel-bandwidth", "2",
               "--name", "renamed", "--metadata", "owner=ana", db=db)
    assert done.returncode == 0, done.stderr
    record = DuckDBStorage(db, read_only=True).get_experiment(experiment.id)
    assert record.name == "renamed" and record.budget == 12 and record.spec.metrics[0].threshold == 60
    assert record.spec.metadata == {"objective": "paretune.testfunctions:size_vs_error", "owner": "ana"}
    low = cli("update", "renamed", "--budget", "2", db=db)
    assert low.returncode == 1 and "5 observation(s)" in low.stderr and "Traceback" not in low.stderr

    assert cli("archive", "renamed", db=db).returncode == 0
    assert "renamed" not in cli("list", db=db).stdout
    assert "archived" in cli("list", "--all", db=db).stdout
    refused = cli("suggest", "renamed", db=db)
    assert refused.returncode == 1 and "archived" in refused.stderr
    with pytest.raises(StorageError, match="archived"):
        TrialSession(DuckDBStorage(str(db)), experiment.id).ask(1)  # the flow asks through this
    tune = cli("tune", "--experiment", "renamed", db=db)  # refused before any cluster or Prefect starts
    assert tune.returncode != 0 and f"paretune unarchive {experiment.id}" in tune.stderr
    assert len(DuckDBStorage(db, read_only=True).observations(experiment.id)) == 5  # data kept and readable
    assert cli("frontier", "renamed", db=db).returncode == 0
    assert cli("unarchive", "renamed", db=db).returncode == 0
    assert "renamed" in cli("list", db=db).stdout


def test_delete_leaves_other_experiments_rows_identical(tmp_path: Path) -> None:
    db = tmp_path / "manage.duckdb"
    keep, drop = filled(db, "keep"), filled(db, "drop", observed=4)
    kept_before = rows(db, keep.id)
    assert all(kept_before[t] for t in ("suggestions", "observation_values", "runs", "run_metrics", "checkpoints"))

    asked = cli("delete", "drop", db=db, stdin="n\n")
    assert asked.returncode == 1 and "cannot be undone" in asked.stdout
    assert DuckDBStorage(db, read_only=True).get_experiment("drop").id == drop.id
    assert cli("delete", "drop", db=db, stdin="y\n").returncode == 0
    assert rows(db, keep.id) == kept_before
    assert not any(rows(db, drop.id).values())
    assert "drop" not in cli("list", "--all", db=db).stdout

    again = filled(db, "again")
    delete_experiment("again", db=str(db))  # the Python API
    assert not any(rows(db, again.id).values()) and rows(db, keep.id) == kept_before
    assert cli("delete", "keep", "--yes", db=db).returncode == 0


def test_a_held_experiment_is_not_changed(tmp_path: Path) -> None:
    db = tmp_path / "manage.duckdb"
    experiment = filled(db, "held")
    before = rows(db, experiment.id)
    with experiment_lease(DatabaseFiles.of(db), experiment.id, wait_s=0, holder=holder_description("tune flow run x1")):
        with pytest.raises(ExperimentBusy, match="tune flow run x1"):
            experiment.update(budget=30)
        deleted = cli("delete", "held", "--yes", db=db)
        assert deleted.returncode == 1 and "tune flow run x1" in deleted.stderr
    assert rows(db, experiment.id) == before


def test_the_dashboard_hides_archived_experiments_unless_asked(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from paretune.dashboard.app import create_app

    db = tmp_path / "manage.duckdb"
    filled(db, "kept")
    shelved = filled(db, "shelved")
    shelved.archive()
    client = TestClient(create_app(db))

    def names(url: str) -> list[str]:
        return sorted(summary["name"] for summary in client.get(url).json())

    assert names("/api/experiments") == ["kept"]
    assert names("/api/experiments?archived=1") == ["kept", "shelved"]
    page = client.get("/").text
    assert "1 archived experiment hidden" in page and ">shelved<" not in page
    assert ">shelved<" in client.get("/?archived=1").text
    assert client.get(f"/experiments/{shelved.id}").status_code == 200  # its data stay readable

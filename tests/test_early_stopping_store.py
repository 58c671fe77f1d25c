"""Early stopping through the lifecycle and a real DuckDB file: runs answer their checkpoints,
stopped trials close `stopped` and stay out of the frontier, answers are kept and never re-made,
and a file of the previous schema migrates with its rows."""

from __future__ import annotations

import duckdb
import pytest

import paretune
from paretune.optimizer import ExperimentSpec
from paretune.storage import DuckDBStorage, StorageError
from paretune.storage.report import experiment_report, frontier_points
from paretune.storage.schema import MIGRATIONS
from paretune.tasks.report import summary_markdown

DEFINITION = {
    "name": "students",
    "parameters": [{"name": "width", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}],
    "metrics": [{"name": "f1", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
    "observation_budget": 4,
    "training_monitor": {"max_checkpoints": 3},
    "metadata": {"early_stopping": {"type": "pareto", "reduction_factor": 2, "min_checkpoints": 1}},
}


def train(run: paretune.runs.Run, f1_per_epoch: float, size: float) -> int:
    """A cooperative objective: evaluate per epoch, return when told to stop; the epochs it ran."""
    epoch = 0
    for epoch in range(1, 4):
        values = {"f1": f1_per_epoch * epoch, "size": size}
        run.log_metrics(values)
        if run.log_checkpoint(epoch, values):
            break
    return epoch


def test_a_checkpoint_past_max_checkpoints_is_refused_and_not_written(tmp_path):
    db = str(tmp_path / "bounded.duckdb")
    experiment = paretune.create_experiment(DEFINITION, db=db)
    run = next(iter(experiment.loop()))
    with run:
        answers = [run.log_checkpoint(epoch, {"f1": 10.0 * epoch, "size": 1.0}) for epoch in range(1, 4)]
        assert answers == [False, False, True]  # alone at rung 1; the 3rd is max_checkpoints
        with pytest.raises(StorageError, match="max_checkpoints"):
            run.log_checkpoint(4, {"f1": 40.0, "size": 1.0})
        assert run.log_checkpoint(3, {"f1": 33.0, "size": 1.0})  # an epoch again (a retried task): replaced
        run.log_metrics({"f1": 30.0, "size": 1.0})
    with DuckDBStorage(db, read_only=True) as store:  # the published copy: three checkpoints, trained to the end
        (observation,) = store.observations(experiment.id)
        assert [(c["epoch"], c["values"]["f1"]) for c in store.checkpoints(observation.run_id)] == [
            (1, 10.0), (2, 20.0), (3, 33.0)]
        assert not observation.stopped and observation.values == {"f1": 30.0, "size": 1.0}


def test_a_loop_ends_once_what_is_left_of_the_budget_fits_no_trial(tmp_path):
    """SigOpt's convergence criterion stopped the only trial at 3 of 4 checkpoints: 0.25 of the
    budget is left, and no trial can cost less than 2 of 4. The loop ends there (it asked for
    another suggestion and was refused), and the experiment is `completed`."""
    db = str(tmp_path / "spent.duckdb")
    definition = {key: value for key, value in DEFINITION.items() if key != "metadata"} | {
        "observation_budget": 1,
        "training_monitor": {"max_checkpoints": 4, "early_stopping_criteria": [
            {"type": "convergence", "name": "flat f1", "metric": "f1", "lookback_checkpoints": 1,
             "min_checkpoints": 2}]}}
    experiment = paretune.create_experiment(definition, db=db)
    told = []
    for run in experiment.loop():
        with run:
            for epoch, f1 in enumerate((10.0, 20.0, 20.0, 30.0), start=1):
                run.log_metrics({"f1": f1, "size": 1.0})
                if run.log_checkpoint(epoch, {"f1": f1, "size": 1.0}):
                    told.append(epoch)
                    break
    assert told == [3]
    progress = experiment.progress()
    assert progress.spent == pytest.approx(0.75) and progress.done
    with DuckDBStorage(db, read_only=True) as store:
        assert store.get_experiment(experiment.id).state == "completed"


def test_runs_answer_checkpoints_and_a_stopped_trial_closes_stopped_outside_the_frontier(tmp_path):
    db = str(tmp_path / "stop.duckdb")
    experiment = paretune.create_experiment(DEFINITION, db=db)
    plan = [(30.0, 10.0), (10.0, 10.0), (31.0, 10.0), (5.0, 10.0)]  # same size: f1 decides at each rung
    epochs = []
    for (f1, size), run in zip(plan, experiment.loop()):  # the plan first: no 5th suggestion is opened
        with run:
            epochs.append(train(run, f1, size))
    assert epochs == [3, 1, 3, 1]  # the 2nd and 4th are the worse half at rung 1; the others train to the end

    store = experiment.storage
    observations = {o.suggestion_id: o for o in store.observations(experiment.id)}
    stopped = [o for o in observations.values() if o.stopped]
    assert [o.values for o in stopped] == [{"f1": 10.0, "size": 10.0}, {"f1": 5.0, "size": 10.0}]
    assert all(o.fidelity == pytest.approx(1 / 3) and not o.failed for o in stopped)
    states = {s.id: s.state for s in store.list_suggestions(experiment.id)}
    assert sorted(states.values()) == ["completed", "completed", "stopped", "stopped"]
    assert {r.status for r in store.list_runs(experiment.id) if states[r.suggestion_id] == "stopped"} == {"stopped"}

    progress = store.progress(experiment.id)
    assert (progress.completed, progress.stopped, progress.failed, progress.observations) == (2, 2, 0, 4)
    assert progress.spent == pytest.approx(2 + 2 / 3)  # a stopped trial costs the share it trained
    report = experiment_report(store, experiment.id)
    assert {p.suggestion_id for p in report.frontier} <= {s for s, state in states.items() if state == "completed"}
    assert sorted(p.status for p in report.points if p.suggestion_id in {o.suggestion_id for o in stopped}) == [
        "stopped", "stopped"]  # the report names them, neither feasible nor failed
    assert report.summary.stopped == 2 and report.summary.full_trials_saved == pytest.approx(4 / 3)
    assert "**Stopped early:** 2 trial(s), saving 1.33 full trials' worth of training." in summary_markdown(report)
    (summary,) = store.query("SELECT * FROM early_stopping_summary WHERE experiment_id = ?", [experiment.id])
    assert summary["stopped"] == 2 and summary["checkpoints_saved"] == pytest.approx(4.0)
    curve = store.query("SELECT checkpoint, stop_checkpoint FROM trial_checkpoints WHERE suggestion_id = ? "
                        "AND metric = 'f1' ORDER BY checkpoint", [stopped[0].suggestion_id])
    assert curve == [{"checkpoint": 1, "stop_checkpoint": 1}]
    assert store.query("SELECT count(*) AS n FROM threshold_report WHERE meets_all AND observation_id = ?",
                       [stopped[0].id]) == [{"n": 0}]


def test_an_answer_is_kept_and_given_again_never_re_decided(tmp_path):
    experiment = paretune.create_experiment(DEFINITION | {"observation_budget": 3}, db=str(tmp_path / "k.duckdb"))
    session = experiment.session
    first, second = session.ask(1, with_runs=True)[0], session.ask(1, with_runs=True)[0]
    assert not session.checkpoint(first, 1, {"f1": 50.0, "size": 1.0}).should_stop
    assert not session.checkpoint(first, 2, {"f1": 60.0, "size": 1.0}).should_stop  # size is seen to be fixed
    stop = session.checkpoint(second, 1, {"f1": 10.0, "size": 1.0})
    assert stop.should_stop and stop.reasons["pareto"]
    third = session.ask(1, with_runs=True)[0]
    session.checkpoint(third, 1, {"f1": 1.0, "size": 1.0})
    # the same checkpoint again (a retried message): the kept answer, though its peers changed since
    again = session.checkpoint(second, 1, {"f1": 10.0, "size": 1.0})
    assert again == stop
    kept = experiment.storage.query("SELECT suggestion_id, checkpoint, should_stop FROM stop_decisions "
                                    "ORDER BY suggestion_id, checkpoint")
    decisions = [(row["checkpoint"], row["should_stop"]) for row in kept]
    assert decisions == [(1, False), (2, False), (1, True), (1, True)]


def test_a_rung_decision_reads_the_front_of_the_trials_trained_to_the_end(tmp_path):
    """Through the lifecycle: a trial a little behind a slightly larger peer, by less than the
    finished trials' front says the extra size buys, goes on; one behind an equal peer stops."""
    experiment = paretune.create_experiment(DEFINITION | {"observation_budget": 10}, db=str(tmp_path / "f.duckdb"))
    session = experiment.session
    for size, f1_per_epoch in ((10.0, 20.0), (12.0, 22.0), (100.0, 5.0)):  # a front: 60 at 10, 66 at 12
        trial = session.ask(1, with_runs=True)[0]
        for epoch in range(1, 4):
            answer = session.checkpoint(trial, epoch, {"f1": f1_per_epoch * epoch, "size": size})
            assert not answer.reasons.get("pareto")
        session.complete(trial, {"f1": f1_per_epoch * 3, "size": size})
    behind_by_size = session.ask(1, with_runs=True)[0]  # 21.5 at size 11 against 22 at size 12: 4.8% buys 1 unit
    assert not session.checkpoint(behind_by_size, 1, {"f1": 21.5, "size": 11.0}).should_stop
    behind = session.ask(1, with_runs=True)[0]  # against the one before, at its own size
    assert session.checkpoint(behind, 1, {"f1": 20.0, "size": 11.0}).reasons["pareto"]


def test_a_rung_projects_each_trial_by_the_growth_its_settings_showed(tmp_path):
    """Through the lifecycle: the stored suggestions' assignments and the finished curves give
    each trial's growth to the end, so a peer that leads at the first rung only because its
    learning rate learns faster early (`paced_f1`) stops no one; a lead at the same settings does, and
    so does a finished trial of the trial's size that ends better than the trial's best case."""
    from tests.test_stopping import paced_f1

    definition = DEFINITION | {
        "parameters": [{"name": "width", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
                       {"name": "learning_rate", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}],
        "observation_budget": 20, "training_monitor": {"max_checkpoints": 9},
        "metadata": {"early_stopping": {"type": "pareto", "reduction_factor": 3, "min_checkpoints": 1}}}
    experiment = paretune.create_experiment(definition, db=str(tmp_path / "paced.duckdb"))
    session = experiment.session

    def report(width: float, learning_rate: float, epochs: int, f1_offset: float = 0.0) -> list[bool]:
        trial = session.open_at({"width": width, "learning_rate": learning_rate}, with_run=True)
        values = [{"f1": paced_f1(width, learning_rate, epoch) + f1_offset, "size": 10.0 + 80.0 * width}
                  for epoch in range(1, epochs + 1)]
        answers = [session.checkpoint(trial, epoch, v).reasons.get("pareto", False)
                   for epoch, v in enumerate(values, 1)]
        if epochs == 9:
            session.complete(trial, values[-1])
        return answers

    for width in (0.2, 0.8):  # trained to the end, whatever they were told: sizes 26 and 74, no peer of those below
        for learning_rate in (0.2, 0.5, 0.9):
            report(width, learning_rate, 9)
    assert report(0.5, 0.95, 1) == [False]  # leads at the first rung: f1 24.3
    assert report(0.5, 0.5, 1) == [False]  # 18.6 there, and ends at 55 against 47
    assert report(0.5, 0.5, 1, f1_offset=-3.0) == [True]  # behind a peer of its own settings
    # leads its size band at the first rung (23.6 against 22.6), but at the settings of a finished
    # student that ended at 57.6, its best case (about 61) ends below the finished 64 of its size
    assert report(0.8, 0.9, 1, f1_offset=1.0) == [True]


def test_a_file_of_the_previous_schema_migrates_with_its_rows(tmp_path):
    """Version 3 rows (views aside: they are dropped and made again by every migration) survive."""
    path = str(tmp_path / "v3.duckdb")
    with DuckDBStorage(str(tmp_path / "source.duckdb")) as source:  # rows as the store writes them
        record = source.create_experiment(ExperimentSpec.model_validate(DEFINITION))
        (suggestion,) = source.create_suggestions(record.id, [{"width": 0.5}])
        run = source.create_run("r", experiment_id=record.id, suggestion_id=suggestion.id)
        source.add_checkpoint(run.id, 1, {"f1": 1.0})
        source.record_observation(suggestion.id, values={"f1": 1.0, "size": 2.0}, run_id=run.id)
    tables = ["experiments", "experiment_metrics", "experiment_tasks", "experiment_parameters", "suggestions", "runs",
              "run_metrics", "observations", "observation_values", "checkpoints"]
    connection = duckdb.connect(path)
    connection.execute("BEGIN TRANSACTION")
    for number, step in enumerate(MIGRATIONS[:3], start=1):
        step(connection)
        connection.execute("INSERT INTO paretune_schema (version) VALUES (?)", [number])
    connection.execute(f"ATTACH '{tmp_path / 'source.duckdb'}' AS source (READ_ONLY)")
    for table in tables:
        columns = [row[0] for row in connection.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() AND table_name = ?",
            [table]).fetchall()]
        connection.execute(f"INSERT INTO {table} SELECT {', '.join(columns)} FROM source.{table}")
    connection.execute("COMMIT")
    connection.close()

    with DuckDBStorage(path) as store:  # opening migrates
        (observation,) = store.observations(record.id)
        assert observation.values == {"f1": 1.0, "size": 2.0} and not observation.stopped
        assert store.get_run(run.id).status == "completed" and store.checkpoints(run.id)[0]["values"] == {"f1": 1.0}
        assert store.progress(record.id).completed == 1
        assert [p.observation_id for p in frontier_points(store, record.id)[1]] == [observation.id]
        version = store.query("SELECT max(version) AS v FROM paretune_schema")[0]["v"]
        assert version == len(MIGRATIONS)


def test_the_optimizer_sees_stopped_trials_as_lower_fidelity_observations_never_as_failures(tmp_path):
    experiment = paretune.create_experiment(DEFINITION | {"observation_budget": 10}, db=str(tmp_path / "p.duckdb"))
    session = experiment.session
    full, stopped = session.ask(1, with_runs=True)[0], session.ask(1, with_runs=True)[0]
    for epoch, f1 in enumerate([10.0, 20.0, 40.0], start=1):
        session.checkpoint(full, epoch, {"f1": f1, "size": 5.0})
    session.complete(full, {"f1": 40.0, "size": 5.0})
    assert session.checkpoint(stopped, 1, {"f1": 2.0, "size": 5.0}).should_stop
    session.complete(stopped, {"f1": 2.0, "size": 5.0})

    history = experiment.storage.history(experiment.id)
    assert [(o.values, o.failed, o.fidelity) for o in history] == [
        ({"f1": 40.0, "size": 5.0}, False, 1.0), ({"f1": 2.0, "size": 5.0}, False, pytest.approx(1 / 3))]
    (next_trial,) = session.ask(1)  # the optimizer takes them as they are
    assert next_trial.suggestion_id not in (full.suggestion_id, stopped.suggestion_id)

"""SigOpt's own client, unchanged, against a real `paretune serve` subprocess on loopback."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import requests
from sigopt import Connection
from sigopt.exception import ApiException

from paretune.storage import DuckDBStorage
from server_fixtures import make_token, paretune, run_client, running_server, sigopt_env

pytestmark = pytest.mark.slow

PARAMETERS = [
    {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
    {"name": "n", "type": "int", "bounds": {"min": 1, "max": 5}},
    {"name": "c", "type": "categorical", "categorical_values": [{"name": "a"}, {"name": "b"}]},
]
METRICS = [
    {"name": "acc", "objective": "maximize", "threshold": 0.1},
    {"name": "size", "objective": "minimize"},
    {"name": "f1", "strategy": "store"},
]


@pytest.fixture()
def served(tmp_path: Path):
    db = tmp_path / "team.duckdb"
    token = make_token(db)
    with running_server(db, tmp_path / "server.log") as server:
        yield server, token, db


def test_core_api_script(served) -> None:
    server, token, db = served
    conn = Connection(client_token=token, api_url=server.url)
    experiment = conn.experiments().create(name="multimetric", parameters=PARAMETERS, metrics=METRICS,
                                           observation_budget=12, parallel_bandwidth=2, metadata={"team": "nlp"})
    assert experiment.observation_budget == 12 and experiment.progress.observation_count == 0
    assert [m.threshold for m in experiment.metrics] == [0.1, None, None]
    calls = conn.experiments(experiment.id)

    first, second = calls.suggestions().create(), calls.suggestions().create()  # two open at once
    assert first.assignments != second.assignments
    assert {s.id for s in calls.suggestions().fetch(state="open").iterate_pages()} == {first.id, second.id}
    observed = calls.observations().create(
        suggestion=first.id, metadata={"host": "gpu-1"},
        values=[{"name": "acc", "value": 0.5}, {"name": "size", "value": 3, "value_stddev": 0.1},
                {"name": "f1", "value": 0.4}])
    assert {v.name: v.value for v in observed.values} == {"acc": 0.5, "size": 3.0, "f1": 0.4}
    assert calls.observations().create(suggestion=second.id, failed=True).failed

    batch = [calls.suggestions().create() for _ in range(3)]
    created = calls.observations().create_batch(observations=[
        {"suggestion": s.id, "values": [{"name": "acc", "value": 0.2 + i / 10}, {"name": "size", "value": 5 - i}]}
        for i, s in enumerate(batch)])
    assert len(list(created.iterate_pages())) == 3
    chosen = calls.observations().create(assignments={"x": 0.25, "n": 2, "c": "b"},
                                         values=[{"name": "acc", "value": 0.9}, {"name": "size", "value": 1}])
    assert chosen.assignments["x"] == 0.25

    best = {b.id for b in calls.best_assignments().fetch().iterate_pages()}
    assert best == {chosen.id}  # it dominates every other observation
    calls.update(metrics=[{"name": "acc", "threshold": 0.95}], observation_budget=11)
    assert list(calls.best_assignments().fetch().iterate_pages()) == []  # nobody meets 0.95
    assert calls.fetch().observation_budget == 11

    with pytest.raises(ApiException) as refused:
        calls.observations().create(suggestion=first.id, values=[{"name": "acc", "value": 1}, {"name": "size", "value": 1}])
    assert refused.value.status_code == 400 and "not open" in str(refused.value)

    with pytest.raises(ApiException) as early:
        calls.importances().fetch()
    assert early.value.status_code == 400 and "needs 10" in str(early.value)
    assert not calls.stopping_criteria().fetch().should_stop
    for i in range(5):  # up to the budget of 11: 10 completed
        calls.observations().create(assignments={"x": i / 4, "n": 1 + i, "c": "a"},
                                    values=[{"name": "acc", "value": i / 4}, {"name": "size", "value": 1 + i}])
    assert set(calls.importances().fetch().importances) == {"x", "n", "c"}
    assert {m.metric for m in calls.metric_importances().fetch().iterate_pages()} == {"acc", "size"}
    paged = [o.id for o in calls.observations().fetch(limit=3).iterate_pages()]  # newest first, 3 a page
    assert len(paged) == 11 and paged == sorted(set(paged), key=int, reverse=True)
    assert calls.observations(paged[-1]).fetch().id == observed.id
    stopping = calls.stopping_criteria().fetch()
    assert stopping.should_stop and stopping.reasons == ["observation_budget_reached"]

    calls.update(observation_budget=20)  # budget left: the refusal below is the archive's
    calls.delete()
    assert calls.fetch().state == "deleted"
    with pytest.raises(ApiException) as archived:
        calls.suggestions().create()
    assert archived.value.status_code == 400 and "archived" in str(archived.value)

    with DuckDBStorage(db, read_only=True) as storage:  # what the API wrote is the store's, for every reader
        record = storage.get_experiment(int(experiment.id))
        assert record.state == "archived" and record.budget == 20 and record.spec.parallel_bandwidth == 2
        assert [m.threshold for m in record.spec.metrics] == [0.95, None, None]
        observations = storage.observations(record.id)
        assert [o.failed for o in observations] == [False, True] + [False] * 9
        assert observations[0].metadata == {"host": "gpu-1"} and observations[0].value_stddevs == {"size": 0.1}
    listed = paretune("list", "--all", db=db)
    assert "multimetric" in listed.stdout and "archived" in listed.stdout
    assert "multimetric" not in paretune("list", db=db).stdout


def test_runs_api_script(served, tmp_path: Path) -> None:
    server, token, db = served
    script = textwrap.dedent("""
        import json, sigopt
        with sigopt.create_run(name="distilbert-baseline") as run:
            run.params.setdefaults(dict(lr=0.1, layers=3))
            run.log_dataset("squad2"); run.log_model("distilbert"); run.log_metadata("gpu", "A100")
            run.log_checkpoint({"loss": 1.0}); run.log_checkpoint({"loss": 0.5})
            run.log_metric("exact", 61.5, stddev=0.2)
        baseline = sigopt.get_run(run.id)
        experiment = sigopt.create_experiment(
            name="tiny", parameters=[dict(name="x", type="double", bounds=dict(min=0, max=1))],
            metrics=[dict(name="y", objective="maximize"), dict(name="z", strategy="store")], budget=5)
        for trial in experiment.loop():
            with trial:
                x = trial.params.x
                trial.log_checkpoint({"y": x / 2})
                if x > 0.9:
                    trial.log_failure()
                    continue
                trial.log_metric("y", x)
                trial.log_metric("z", 1 - x)
        runs = list(experiment.get_runs())
        print(json.dumps({"baseline": [baseline.state, baseline.values["exact"].value, baseline.assignments["lr"],
                                       baseline.checkpoint_count, baseline.datasets, baseline.model.type],
                          "experiment": experiment.id, "runs": [[r.state, r.observation] for r in runs],
                          "best": [r.id for r in experiment.get_best_runs()]}))
    """)
    done = run_client(script, sigopt_env(server, token, SIGOPT_PROJECT="distillation"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["baseline"] == ["completed", 61.5, 0.1, 2, ["squad2"], "distilbert"]
    assert len(result["runs"]) == 5 and all(observation for _, observation in result["runs"])
    with DuckDBStorage(db, read_only=True) as storage:
        experiment_id = int(result["experiment"])
        progress = storage.progress(experiment_id)
        assert progress.observations == 5 and progress.open_suggestions == 0
        assert storage.get_experiment(experiment_id).project == "distillation"
        runs = storage.list_runs(experiment_id)
        assert all(len(storage.checkpoints(r.id)) == 1 for r in runs)  # each trial's checkpoint is kept
        completed = [o for o in storage.observations(experiment_id) if not o.failed]
        assert all(set(o.values) == {"y", "z"} for o in completed)
        best = max(completed, key=lambda o: o.values["y"])
        assert [str(best.run_id)] == result["best"]


@pytest.fixture()
def observed(served):
    """`served`, with a 4-observation experiment (its whole budget) made through SigOpt's client."""
    server, token, db = served
    calls = Connection(client_token=token, api_url=server.url).experiments(Connection(
        client_token=token, api_url=server.url).experiments().create(
        name="edits", parameters=PARAMETERS, metrics=METRICS, observation_budget=4).id)
    observations = [calls.observations().create(suggestion=calls.suggestions().create().id,
                                                values=[{"name": "acc", "value": 0.2 + i / 10},
                                                        {"name": "size", "value": 4 - i}]) for i in range(4)]
    yield server, db, calls, observations


def test_observations_are_updated_and_deleted(observed) -> None:
    server, db, calls, (first, second, third, fourth) = observed
    updated = calls.observations(first.id).update(
        values=[{"name": "acc", "value": 0.99}, {"name": "size", "value": 0.5, "value_stddev": 0.1}],
        metadata={"rerun": "yes"})
    assert (updated.id, updated.suggestion, updated.assignments) == (first.id, first.suggestion, first.assignments)
    assert {v.name: (v.value, v.value_stddev) for v in updated.values} == {"acc": (0.99, None), "size": (0.5, 0.1)}
    assert calls.observations(first.id).fetch().metadata["rerun"] == "yes"
    assert {b.id for b in calls.best_assignments().fetch().iterate_pages()} == {first.id}  # the search's view too

    turned = calls.observations(second.id).update(failed=True, values=None)
    assert turned.failed and turned.values == [] and turned.metadata is None
    with pytest.raises(ApiException) as kept_values:  # SigOpt's rule: the values stay unless replaced
        calls.observations(third.id).update(failed=True)
    assert kept_values.value.status_code == 400 and "values: null" in str(kept_values.value)
    with pytest.raises(ApiException) as moved:
        calls.observations(third.id).update(assignments={"x": 0.5, "n": 1, "c": "a"})
    assert moved.value.status_code == 400 and "delete it" in str(moved.value)

    with pytest.raises(ApiException) as spent:
        calls.suggestions().create()
    assert spent.value.status_code == 400 and "budget" in str(spent.value)
    calls.observations(fourth.id).delete()  # its suggestion stays closed; the budget gets one back
    with pytest.raises(ApiException) as gone:
        calls.observations(fourth.id).fetch()
    assert gone.value.status_code == 404
    assert calls.fetch().progress.observation_count == 3
    assert calls.suggestions(fourth.suggestion).fetch().state == "closed"
    assert calls.suggestions().create().state == "open"

    frontier = json.loads(paretune("frontier", calls.fetch().id, "--format", "json", db=db).stdout)
    assert [point["assignments"] for point in frontier] == [first.assignments.to_json()]  # the CLI reads the change
    calls.observations().delete()
    assert list(calls.observations().fetch().iterate_pages()) == []
    with DuckDBStorage(db, read_only=True) as storage:  # the published copy: nothing left, one trial open
        experiment_id = int(calls.fetch().id)
        assert storage.observations(experiment_id) == []
        assert [s.state for s in storage.list_suggestions(experiment_id)] == ["cancelled"] * 4 + ["open"]


def test_a_checkpoint_answers_whether_to_stop_and_keeps_its_answer(served) -> None:
    """SigOpt's training monitor through its core API: each checkpoint created answers
    `should_stop` and `stopping_reasons`, and listing or fetching the checkpoints later shows the
    same answers (the lifecycle keeps them by checkpoint number); `max_checkpoints` bounds a run."""
    server, token, db = served
    conn = Connection(client_token=token, api_url=server.url)
    experiment = conn.experiments().create(
        name="monitored", parameters=PARAMETERS, metrics=METRICS, observation_budget=4,
        training_monitor={"max_checkpoints": 5, "early_stopping_criteria": [
            {"type": "convergence", "name": "acc flat", "metric": "acc", "lookback_checkpoints": 1,
             "min_checkpoints": 2}]})
    run = conn.experiments(experiment.id).training_runs().create()
    created = [conn.training_runs(run.id).checkpoints().create(
        values=[{"name": "acc", "value": acc}, {"name": "size", "value": 3}]) for acc in (0.3, 0.5, 0.5)]
    assert [c.should_stop for c in created] == [False, False, True]  # rising, then flat
    assert created[-1].stopping_reasons.to_json() == {"acc flat": True, "max_checkpoints": False}

    listed = list(conn.training_runs(run.id).checkpoints().fetch().iterate_pages())  # newest first
    assert [(c.id, c.should_stop) for c in listed] == [(c.id, c.should_stop) for c in reversed(created)]
    fetched = conn.training_runs(run.id).checkpoints(created[-1].id).fetch()
    assert fetched.should_stop and fetched.stopping_reasons.to_json() == created[-1].stopping_reasons.to_json()
    assert [v.value for v in fetched.values if v.name == "acc"] == [0.5]
    with pytest.raises(ApiException) as missing:
        conn.training_runs(run.id).checkpoints(f"{run.id}-9").fetch()
    assert missing.value.status_code == 404
    tokenless = requests.get(f"{server.url}/v1/training_runs/{run.id}/checkpoints/{created[-1].id}", timeout=30)
    assert tokenless.status_code == 401  # the new route sits behind the token gate like every other

    conn.training_runs(run.id).update(state="completed", values={"acc": {"value": 0.5}, "size": {"value": 3}})

    rising = conn.experiments(experiment.id).training_runs().create()
    answers = [conn.training_runs(rising.id).checkpoints().create(
        values=[{"name": "acc", "value": epoch / 10}, {"name": "size", "value": 2}]) for epoch in range(1, 6)]
    assert [a.should_stop for a in answers] == [False] * 4 + [True]  # never converged; the 5th is the last
    assert answers[-1].stopping_reasons.to_json() == {"acc flat": False, "max_checkpoints": True}
    with pytest.raises(ApiException) as past:
        conn.training_runs(rising.id).checkpoints().create(values=[{"name": "acc", "value": 0.6},
                                                                   {"name": "size", "value": 2}])
    assert past.value.status_code == 400 and "max_checkpoints" in str(past.value)
    assert len(list(conn.training_runs(rising.id).checkpoints().fetch().iterate_pages())) == 5  # nothing written
    with DuckDBStorage(db, read_only=True) as storage:  # told to stop at its 3rd of 5 checkpoints: closed stopped
        (observation,) = storage.observations(int(experiment.id))
        assert observation.stopped and observation.fidelity == pytest.approx(3 / 5)


def test_a_runs_api_loop_reads_the_answer_back_as_its_newest_checkpoint(served, tmp_path: Path) -> None:
    """SigOpt's `run.log_checkpoint` drops the server's answer; the README's way to read it (the
    newest checkpoint's `should_stop`) works inside SigOpt's own experiment loop, and the loop
    ends when what is left of the budget fits no trial."""
    server, token, _ = served
    script = textwrap.dedent("""
        import json, sigopt
        from sigopt import Connection
        experiment = sigopt.create_experiment(
            name="monitored-loop", parameters=[dict(name="x", type="double", bounds=dict(min=0, max=1))],
            metrics=[dict(name="y", objective="maximize")], budget=1,
            training_monitor=dict(max_checkpoints=4, early_stopping_criteria=[dict(
                type="convergence", name="y flat", metric="y", lookback_checkpoints=1, min_checkpoints=2)]))
        told = []
        for run in experiment.loop():
            with run:
                for y in (0.3, 0.5, 0.5):
                    run.log_checkpoint({"y": y})
                    newest = next(Connection().training_runs(run.id).checkpoints().fetch(limit=1).iterate_pages())
                    told.append(newest.should_stop)
                    if told[-1]:
                        break
                run.log_metric("y", 0.5)
        reasons = Connection().experiments(experiment.id).stopping_criteria().fetch().reasons
        print(json.dumps({"told": told, "remaining": experiment.progress.remaining_budget, "reasons": reasons}))
    """)
    done = run_client(script, sigopt_env(server, token, SIGOPT_PROJECT="monitoring"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # Stopped at 3 of 4 checkpoints: 0.25 of the budget of 1 is left, less than any trial costs
    # (2 of 4 checkpoints at the earliest), so the loop ends there instead of being refused a run.
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "told": [False, False, True], "remaining": 0, "reasons": ["observation_budget_reached"]}

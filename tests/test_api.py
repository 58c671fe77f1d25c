import pytest

import paretune
from paretune.optimizer import Proposal
from paretune.failures import OutOfMemory
from paretune.testfunctions import SIZE_VS_ERROR_SPEC, size_vs_error
from paretune.storage import StorageError

SPEC = SIZE_VS_ERROR_SPEC | {"observation_budget": 6}
GOOD = {"accuracy": 0.5, "size": 100.0}


@pytest.fixture
def experiment(tmp_path):
    experiment = paretune.create_experiment(SPEC, db=str(tmp_path / "api.duckdb"))
    yield experiment
    experiment.storage.close()


def written_rows(experiment):
    return experiment.storage.query(
        "SELECT (SELECT count(*) FROM observations) AS observations, (SELECT count(*) FROM observation_values) AS vals"
    )[0]


def test_ask_tell_loop_fills_the_budget_and_reports_a_frontier(experiment):
    while not experiment.progress().done:
        suggestion = experiment.suggest()
        assert experiment.spec.parameter("depth").coerce(suggestion.assignments["depth"]) == suggestion.assignments["depth"]
        try:
            experiment.observe(suggestion, values=size_vs_error(suggestion.assignments))
        except OutOfMemory as failure:
            experiment.observe(suggestion, failed=True, reason=str(failure))
    progress = experiment.progress()
    assert progress.observations == 6 and progress.remaining == 0 and progress.open_suggestions == 0
    frontier = experiment.frontier()
    assert frontier and all(row["values"]["accuracy"] >= 0.3 for row in frontier)
    assert experiment.best() == frontier


def test_suggestions_are_reproducible_per_experiment(tmp_path):
    first = paretune.create_experiment(SPEC, db=str(tmp_path / "a.duckdb"))
    second = paretune.create_experiment(SPEC, db=str(tmp_path / "b.duckdb"))
    assert [s.assignments for s in first.suggest_batch(3)] == [s.assignments for s in second.suggest_batch(3)]


def test_open_experiment_by_name_and_id(experiment):
    again = paretune.open_experiment(experiment.name, storage=experiment.storage)
    assert again.id == experiment.id and again.spec == experiment.spec
    assert paretune.open_experiment(experiment.id, storage=experiment.storage).name == experiment.name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": {"accuracy": 0.5}}, "metric size: missing"),
        ({"values": GOOD | {"bleu": 1.0}}, "metric bleu: the experiment has no such metric"),
        ({"values": GOOD | {"size": float("nan")}}, "metric size: nan is not finite; report the trial with failed"),
        ({"values": GOOD | {"accuracy": "high"}}, "metric accuracy: 'high' is not a number"),
        ({"values": GOOD, "failed": True}, "a failed observation carries no values"),
        ({"values": GOOD, "reason": "oom"}, "`reason` is for failed observations"),
        ({"values": GOOD, "duration_s": -1.0}, "duration_s must be a finite number >= 0"),
        ({}, "give the metric values"),
        ({"values": {}}, "metrics must be a mapping of metric name to number, got an empty mapping"),
        ({"values": [1.0, 2.0]}, "metrics must be a mapping of metric name to number, got list"),
    ],
)
def test_bad_observations_are_refused_and_write_nothing(experiment, kwargs, message):
    suggestion = experiment.suggest()
    with pytest.raises(StorageError, match=message):
        experiment.observe(suggestion, **kwargs)
    assert written_rows(experiment) == {"observations": 0, "vals": 0}
    assert experiment.storage.get_suggestion(suggestion.id).state == "open"


def test_unknown_and_already_observed_suggestions_are_refused(experiment):
    with pytest.raises(StorageError, match="no suggestion 999"):
        experiment.observe(999, values=GOOD)
    suggestion = experiment.suggest()
    experiment.observe(suggestion, values=GOOD)
    with pytest.raises(StorageError, match="completed, not open"):
        experiment.observe(suggestion, values=GOOD)
    assert written_rows(experiment) == {"observations": 1, "vals": 2}


def test_a_suggestion_of_another_experiment_is_refused(experiment):
    other = paretune.create_experiment(SPEC, storage=experiment.storage, allow_duplicate_name=True)
    foreign = other.suggest()
    with pytest.raises(StorageError, match=f"belongs to experiment {other.id}, not {experiment.id}"):
        experiment.observe(foreign, values=GOOD)


def test_pending_suggestions_reach_the_optimizer(experiment, monkeypatch):
    seen = {}

    def spy(spec, history, pending, n=1, seed=None, **options):
        seen["pending"] = pending
        return [Proposal({"width": 64.0, "depth": 2, "learning_rate": 1e-3, "optimizer": "adamw"})] * n

    first = experiment.suggest()
    monkeypatch.setattr("paretune.optimizer.propose", spy)
    experiment.suggest()
    assert seen["pending"] == [first.assignments]


def test_experiment_loop_records_runs_and_observations(experiment):
    for run in experiment.loop():
        with run:
            if run.params["depth"] >= 6:
                raise OutOfMemory("too deep")
            run.log_checkpoint(1, {"accuracy": 0.1})
            run.log_metrics(size_vs_error(run.params, None))
    progress = experiment.progress()
    assert progress.observations == 6
    runs = experiment.storage.list_runs(experiment.id)
    assert len(runs) == 6 and all(r.suggestion_id is not None for r in runs)
    for observation in experiment.observations():
        run = experiment.storage.get_run(observation.run_id)
        assert run.suggestion_id == observation.suggestion_id
        assert run.status == ("failed" if observation.failed else "completed")
        if not observation.failed:
            assert experiment.storage.checkpoints(run.id)[0]["epoch"] == 1


def test_loop_turns_a_nan_metric_into_a_failure(experiment):
    run = next(experiment.loop())
    with run:
        run.log_metric("accuracy", float("nan"))
        run.log_metric("size", 10.0)
    (observation,) = experiment.observations()
    assert observation.failed and "diverged" in observation.failure_reason


def test_loop_with_missing_metrics_records_the_objective_failure(experiment):
    run = next(experiment.loop())
    with run:
        run.log_metric("accuracy", 0.5)
    (observation,) = experiment.observations()
    assert observation.failed
    assert observation.failure_reason == ("invalid_metrics: metric size: missing; every optimized and constraint "
                                          "metric must be reported")
    assert run.record().status == "failed" and run.record().failure_reason == observation.failure_reason


def test_loop_keeps_undeclared_metrics_and_numpy_scalars_on_the_run(experiment):
    import numpy as np
    import torch

    run = next(experiment.loop())
    with run:
        run.log_metrics({"accuracy": np.float32(0.5), "size": torch.tensor(12.0), "epochs": np.int64(3)})
    (observation,) = experiment.observations()
    assert observation.values == {"accuracy": 0.5, "size": 12.0}
    assert run.record().metrics == {"accuracy": 0.5, "size": 12.0, "epochs": 3.0}


def test_a_bug_in_a_loop_body_surfaces_and_is_recorded(experiment):
    run = next(experiment.loop())
    with pytest.raises(ZeroDivisionError):
        with run:
            1 / 0
    (observation,) = experiment.observations()
    assert observation.failed and observation.failure_reason == "error: ZeroDivisionError: division by zero"
    assert "1 / 0" in run.record().metadata["traceback"]


def test_standalone_run_records_environment_and_status(tmp_path):
    db = str(tmp_path / "runs.duckdb")
    with paretune.run("distilbert-baseline", db=db, metadata={"note": "first"}) as run:
        run.log_parameter("learning_rate", 3e-5)
        run.log_metric("f1", 0.71)
        run.log_checkpoint(1, {"f1": 0.6, "loss": 1.2})
        run.log_metadata("dataset", "squad_v2")
    record = run.record()
    assert record.status == "completed"
    assert record.parameters == {"learning_rate": 3e-5}
    assert record.metrics == {"f1": 0.71}
    assert record.metadata == {"note": "first", "dataset": "squad_v2"}
    assert record.host and record.device == "cpu" and record.ended_at >= record.started_at
    run._storage.close()
    with pytest.raises(RuntimeError):
        with paretune.run("crashes", db=db) as crashing:
            raise RuntimeError("boom")
    failed = crashing.record()
    assert failed.status == "failed" and "RuntimeError: boom" in failed.failure_reason

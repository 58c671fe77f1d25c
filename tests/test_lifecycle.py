"""The one trial lifecycle: metric cleaning, failure vocabulary, seeding, budget, atomic close."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paretune.optimizer import ExperimentSpec
from paretune.failures import Diverged, Failure, FailureKind, OutOfMemory
from paretune.lifecycle import MetricsRefused, TrialSession, clean_metrics, suggestion_seed
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from paretune.storage import DuckDBStorage, StorageError

SPEC = ExperimentSpec.model_validate(SIZE_VS_ERROR_SPEC)


@pytest.fixture
def session(tmp_path):
    storage = DuckDBStorage(tmp_path / "lifecycle.duckdb")
    yield TrialSession(storage, storage.create_experiment(SPEC.model_copy(update={"observation_budget": 4})).id)
    storage.close()


@pytest.mark.parametrize("number", [np.float32(0.5), np.float64(0.5), np.int64(3), torch.tensor(0.5),
                                    torch.tensor(3, dtype=torch.int64), np.array(0.5), 3, 0.5])
def test_numpy_and_torch_scalars_are_numbers(number):
    metrics = clean_metrics(SPEC, {"accuracy": number, "size": 10})
    assert metrics.observed == {"accuracy": float(number), "size": 10.0}
    assert all(type(value) is float for value in metrics.observed.values())


def test_undeclared_metrics_are_kept_apart():
    metrics = clean_metrics(SPEC, {"accuracy": 0.5, "size": 10, "HasAns_f1": np.float32(12.5)})
    assert metrics.observed == {"accuracy": 0.5, "size": 10.0}
    assert metrics.extra == {"HasAns_f1": 12.5}


@pytest.mark.parametrize(("reported", "kind", "detail"), [
    ({"accuracy": math.nan, "size": 1.0}, FailureKind.DIVERGED, "metric accuracy: nan is not finite"),
    ({"accuracy": 0.5, "size": 1.0, "extra": np.float32("inf")}, FailureKind.DIVERGED,
     "metric extra: np.float32(inf) is not finite"),
    ({"accuracy": 0.5}, FailureKind.INVALID_METRICS, "metric size: missing"),
    ({"accuracy": 0.5, "size": "big"}, FailureKind.INVALID_METRICS, "metric size: 'big' is not a number"),
    ({"accuracy": True, "size": 1.0}, FailureKind.INVALID_METRICS, "metric accuracy: True is not a number"),
    ({"accuracy": torch.tensor([0.5, 0.6]), "size": 1.0}, FailureKind.INVALID_METRICS, "shape (2,)"),
    ([0.5, 1.0], FailureKind.INVALID_METRICS, "got list"),
    (None, FailureKind.INVALID_METRICS, "got NoneType"),
])
def test_unusable_metrics_name_the_failure(reported, kind, detail):
    with pytest.raises(MetricsRefused) as refused:
        clean_metrics(SPEC, reported)
    assert refused.value.failure.kind is kind and detail in refused.value.failure.detail


@pytest.mark.parametrize(("made", "reason"), [
    (Failure.from_exception(ValueError("boom")), "error: ValueError: boom"),
    (Failure.from_exception(OutOfMemory("needs 80 GiB")), "out_of_memory: needs 80 GiB"),
    (Failure.from_exception(Diverged("loss is nan")), "diverged: loss is nan"),
    (Failure.from_reason("out_of_memory"), "out_of_memory"),
    (Failure.from_reason("timeout: 3 h"), "timeout: 3 h"),
    (Failure.from_reason("the GPU caught fire"), "failed: the GPU caught fire"),
    (Failure.from_reason(None), "failed"),
])
def test_one_vocabulary_of_failure_reasons(made, reason):
    assert made.reason == reason
    assert Failure.from_reason(made.reason) == made  # a stored reason reads back as the same failure


def test_seeds_are_reproducible_and_distinct():
    assert suggestion_seed(7, 3) == suggestion_seed(7, 3)
    assert len({suggestion_seed(base, n) for base in range(5) for n in range(50)}) == 250


def test_ask_never_goes_beyond_the_budget(session):
    session.ask(3)
    with pytest.raises(StorageError, match=r"1 suggestion\(s\) left in its budget of 4 \(0 observed, 3 open\); "
                                           "asked for 2"):
        session.ask(2)
    assert len(session.storage.list_suggestions(session.experiment_id)) == 3


def test_completing_the_budget_completes_the_experiment(session):
    for trial in session.ask(4, with_runs=True):
        session.complete(trial, {"accuracy": np.float32(0.5), "size": np.int64(10)}, duration_s=1.0)
    assert session.storage.get_experiment(session.experiment_id).state == "completed"
    session.storage.set_observation_budget(session.experiment_id, 6)
    assert session.storage.get_experiment(session.experiment_id).state == "active"


def test_an_objective_failure_closes_run_and_observation_together(session):
    (trial,) = session.ask(1, with_runs=True)
    observation = session.complete(trial, {"accuracy": math.nan, "size": 10.0}, duration_s=2.0)
    run = session.storage.get_run(trial.run_id)
    assert observation.failed and observation.failure_reason == "diverged: metric accuracy: nan is not finite"
    assert run.status == "failed" and run.failure_reason == observation.failure_reason
    assert session.storage.get_suggestion(trial.suggestion_id).state == "failed"


def test_a_refused_close_writes_nothing(session):
    (trial,) = session.ask(1, with_runs=True)
    with pytest.raises(StorageError, match="metric size: missing"):
        session.complete(trial.suggestion_id, {"accuracy": 0.5}, strict=True)
    with pytest.raises(StorageError, match="is not a finite number|not finite"):
        session.storage.record_observation(trial.suggestion_id, values={"accuracy": 0.5, "size": 1.0},
                                           run_id=trial.run_id, run_metrics={"loss": math.inf})
    assert session.storage.get_suggestion(trial.suggestion_id).state == "open"
    assert session.storage.get_run(trial.run_id).status == "running"
    assert session.storage.get_run(trial.run_id).metrics == {}
    assert session.storage.observations(session.experiment_id) == []


def test_cancel_and_expire_close_without_observations(session):
    cancelled, expired = session.ask(2, with_runs=True)
    assert session.cancel([cancelled], "cancelled: by the user") == [cancelled.suggestion_id]
    assert session.expire_leftovers() == [expired.suggestion_id]
    storage = session.storage
    assert storage.get_suggestion(cancelled.suggestion_id).state == "cancelled"
    assert storage.get_run(cancelled.run_id).status == "cancelled"
    assert storage.get_suggestion(expired.suggestion_id).state == "expired"
    assert storage.get_run(expired.run_id).status == "failed"
    assert storage.progress(session.experiment_id).observations == 0
    with pytest.raises(StorageError, match="cancelled, not open"):
        session.complete(cancelled, {"accuracy": 0.5, "size": 1.0})


def test_a_lost_suggestion_is_not_issued_again(tmp_path):
    """A box of doubles starts from a deterministic sequence: after a killed process's suggestion
    expires, the next one moves on rather than repeating the point that may have killed it."""
    box = ExperimentSpec.model_validate({
        "name": "box", "metrics": [{"name": "y"}],
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}]})
    storage = DuckDBStorage(tmp_path / "box.duckdb")
    session = TrialSession(storage, storage.create_experiment(box).id)
    (first,) = session.ask(1)
    session.complete(first, {"y": 1.0})
    (lost,) = session.ask(1)
    assert session.expire_leftovers() == [lost.suggestion_id]
    (after,) = session.ask(1)
    assert after.assignments != lost.assignments
    storage.close()

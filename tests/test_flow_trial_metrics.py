"""What a trial's returned metrics become: the observation, the run, or a failure."""

import math

import pytest

from optimizer import ExperimentSpec
from paretune.failures import Diverged
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from storage import DuckDBStorage
from tasks.record import close_trial, open_run, open_suggestion
from tasks.trial import check_metrics

SPEC = ExperimentSpec.model_validate(SIZE_VS_ERROR_SPEC)


def test_metrics_beyond_the_spec_are_kept_apart_not_refused():
    observed, unobserved = check_metrics(SPEC, {"accuracy": 0.5, "size": 10, "HasAns_f1": 12.5})
    assert observed == {"accuracy": 0.5, "size": 10.0}
    assert unobserved == {"HasAns_f1": 12.5}


@pytest.mark.parametrize(("values", "error", "message"), [
    ({"accuracy": math.nan, "size": 1.0}, Diverged, "metric accuracy is nan"),
    ({"accuracy": 0.5, "size": 1.0, "extra": math.inf}, Diverged, "metric extra is inf"),
    ({"accuracy": 0.5}, TypeError, "values.size: missing"),
    ({"accuracy": 0.5, "size": "big"}, TypeError, "metric values must be numbers"),
    ([0.5, 1.0], TypeError, "must return a dict"),
])
def test_unusable_metrics_fail_the_trial(values, error, message):
    with pytest.raises(error, match=message):
        check_metrics(SPEC, values)


def test_the_run_keeps_every_metric_and_the_observation_the_declared_ones(tmp_path):
    with DuckDBStorage(tmp_path / "trial.duckdb") as storage:
        experiment = storage.create_experiment(SPEC)
        assignments = {"width": 64.0, "depth": 2, "learning_rate": 1e-3, "optimizer": "adamw"}
        suggestion = open_suggestion(storage, experiment.id, assignments)
        run_id = open_run(storage, experiment.id, suggestion.id, suggestion.assignments, "task-run-id")
        observed, unobserved = check_metrics(SPEC, {"accuracy": 0.5, "size": 10, "HasAns_f1": 12.5})
        close_trial(storage, suggestion.id, run_id, observed, None, 1.5, unobserved)
        (observation,) = storage.observations(experiment.id)
        assert observation.values == {"accuracy": 0.5, "size": 10.0}
        assert storage.get_run(run_id).metrics == {"accuracy": 0.5, "size": 10.0, "HasAns_f1": 12.5}
        assert storage.get_run(run_id).status == "completed"

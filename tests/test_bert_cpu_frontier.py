"""The CPU case study's arms and arithmetic: random search (SigOpt's `type: random`), paretune
and paretune with early stopping through the same tune flow on the same students, each sweep's
hypervolume and cost, and the smallest-within-a-point and best-at-size answers."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from benchmarks.bert_cpu_frontier import (SPEC_PATH, arm_spec, best_at_most, completed, completed_within,
                                          hypervolume, smallest_within, sweep_cost)
from paretune.optimizer import ExperimentSpec
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from paretune.storage import DuckDBStorage, ObservationRecord


def test_a_random_search_experiment_draws_every_suggestion_at_start_up(tmp_path):
    """SigOpt's `type: random`: the history never steers the draws (a random-search peer)."""
    import paretune

    spec = dict(SIZE_VS_ERROR_SPEC) | {"observation_budget": 400}
    searched = paretune.create_experiment(spec | {"type": "random"}, db=str(tmp_path / "r.duckdb"))
    modelled = paretune.create_experiment(spec, db=str(tmp_path / "m.duckdb"))
    widths = []
    for experiment in (searched, modelled):
        for _ in range(40):  # past the model's start-up: the model-based search narrows, random search does not
            suggestion = experiment.suggest()
            experiment.observe(suggestion, values={"accuracy": -abs(math.log(suggestion.assignments["width"] / 64)),
                                                   "size": 1.0})
        widths.append([s.assignments["width"] for s in experiment.suggest_batch(100)])
    random_widths, model_widths = (np.log(w) for w in widths)
    # random search keeps covering [16, 1024] log-uniformly; the model concentrates near the optimum, 64
    assert np.mean(random_widths < math.log(128)) == pytest.approx(0.5, abs=0.15)
    assert np.mean(np.abs(model_widths - math.log(64)) < 0.7) > np.mean(np.abs(random_widths - math.log(64)) < 0.7)


@pytest.mark.slow
def test_each_method_sweeps_once_per_seed_through_the_tune_flow(tmp_path, prefect_api):
    from benchmarks.bert_cpu_frontier import sweep_experiment
    from paretune.flows.tune import ExperimentSource, TuneOptions, tune

    spec = ExperimentSpec.model_validate({**SIZE_VS_ERROR_SPEC, "metadata": {
        "objective": "paretune.testfunctions:size_vs_error", "trial": {"memory_budget": 1500.0}}})
    db = str(tmp_path / "sweeps.duckdb")
    first = sweep_experiment(db, spec, "random", seed=3)
    assert sweep_experiment(db, spec, "random", seed=3) == first != sweep_experiment(db, spec, "paretune", seed=3)
    tune(ExperimentSource(experiment=str(first)), db, TuneOptions(budget=12, parallelism=2, report=False))
    with DuckDBStorage(db, read_only=True) as storage:
        record = storage.get_experiment(first)
        observations = storage.observations(first)
    assert (record.name, record.spec.type, len(observations)) == ("demo-size-vs-accuracy-random-seed3", "random", 12)
    for observation in observations:
        size = observation.assignments["width"] * observation.assignments["depth"]
        assert observation.failed == (size > 1500.0)


def _student(f1: float, size: float) -> ObservationRecord:
    return ObservationRecord(id=0, experiment_id=1, suggestion_id=0, assignments={"n_layers": 1}, failed=False,
                             values={"HasAns_f1": f1, "num_parameters": size}, failure_reason=None, duration_s=1.0,
                             run_id=None, created_at=datetime.now())


def test_hypervolume_and_the_case_study_answers():
    reference = {"HasAns_f1": 50.0, "num_parameters": 100.0}
    students = [_student(20.0, 60.0), _student(49.5, 80.0), _student(52.0, 100.0), _student(40.0, 90.0)]
    # (0.2 x (1.1 - 0.6)) + (0.495 - 0.2) x (1.1 - 0.8) + (0.52 - 0.495) x (1.1 - 1.0); the 40-point one is dominated
    assert hypervolume(students, 100.0) == pytest.approx(0.2 * 0.5 + 0.295 * 0.3 + 0.025 * 0.1)
    assert hypervolume(students[:1], 100.0) < hypervolume(students, 100.0)
    assert hypervolume([], 100.0) == 0.0
    assert smallest_within(students, reference).values["num_parameters"] == 80.0
    assert smallest_within(students[:1], reference) is None
    assert best_at_most(students, 100.0).values["HasAns_f1"] == 52.0
    assert best_at_most(students, 85.0).values["HasAns_f1"] == 49.5


def test_the_arms_train_the_same_students_and_only_one_stops_them():
    spec = ExperimentSpec.from_file(SPEC_PATH)
    arms = {method: arm_spec(spec, method, seed=1) for method in ("random", "paretune", "paretune_early_stopping")}
    assert {method: (arm.type, arm.early_stopping is not None) for method, arm in arms.items()} == {
        "random": ("random", False), "paretune": ("offline", False), "paretune_early_stopping": ("offline", True)}
    # the same objective, trial settings and checkpoints: a student costs the same CPU in every arm
    assert len({(arm.metadata["objective"], str(arm.metadata["trial"]), arm.training_monitor.max_checkpoints)
                for arm in arms.values()}) == 1
    assert arms["paretune"].name == f"{spec.name}-paretune-seed1"
    without = spec.model_copy(update={"metadata": arms["paretune"].metadata})
    with pytest.raises(ValueError, match="paretune_early_stopping: .* no metadata.early_stopping"):
        arm_spec(without, "paretune_early_stopping", seed=0)


def test_a_sweeps_cost_counts_a_stopped_student_at_its_share_and_keeps_it_off_the_hypervolume(tmp_path):
    spec = arm_spec(ExperimentSpec.from_file(SPEC_PATH), "paretune_early_stopping", seed=0)
    db = str(tmp_path / "sweeps.duckdb")
    with DuckDBStorage(db) as storage:
        experiment_id = storage.create_experiment(spec).id
        ends = [({"HasAns_f1": 40.0, "num_parameters": 2e7}, None, 1800.0),  # trained to the end
                ({"HasAns_f1": 90.0, "num_parameters": 1e7}, 1 / 3, 600.0),  # stopped at its second checkpoint
                (None, None, 36.0)]  # failed
        assignments = [{"learning_rate": 1e-4, "alpha_ce": 0.5, "n_layers": layers, "n_heads": 4} for layers in (1, 2, 3)]
        for suggestion, (values, stopped_at, seconds) in zip(storage.create_suggestions(experiment_id, assignments), ends):
            storage.record_observation(suggestion.id, values=values, failed=values is None, duration_s=seconds,
                                       reason=None if values else "out of memory", stopped_at=stopped_at)
    cost = sweep_cost(db, experiment_id)
    assert (cost.completed, cost.stopped, cost.failed) == (1, 1, 1)
    assert cost.students_worth == pytest.approx(1 + 1 / 3 + 1)
    assert cost.cpu_hours == pytest.approx((1800 + 600 + 36) / 3600)
    students = completed(db, experiment_id)
    assert [o.values["HasAns_f1"] for o in students] == [40.0]  # the stopped student's 90 is a checkpoint's, not a result
    assert hypervolume(students, 2e7) == pytest.approx(0.4 * (1.1 - 1.0))


def test_equal_cpu_keeps_the_students_finished_before_the_spend_in_the_order_they_ended(tmp_path):
    spec = arm_spec(ExperimentSpec.from_file(SPEC_PATH), "paretune_early_stopping", seed=0)
    db = str(tmp_path / "sweeps.duckdb")
    ends = [(30.0, None, 1000.0), (90.0, 0.5, 900.0), (None, None, 100.0), (50.0, None, 1000.0)]
    with DuckDBStorage(db) as storage:
        experiment_id = storage.create_experiment(spec).id
        assignments = [{"learning_rate": 1e-4, "alpha_ce": 0.5, "n_layers": layers, "n_heads": 4} for layers in (1, 2, 3, 4)]
        for suggestion, (f1, stopped_at, seconds) in zip(storage.create_suggestions(experiment_id, assignments), ends):
            values = None if f1 is None else {"HasAns_f1": f1, "num_parameters": 1e7}
            storage.record_observation(suggestion.id, values=values, failed=values is None, duration_s=seconds,
                                       reason=None if values else "out of memory", stopped_at=stopped_at)
    # the stopped and the failed student's time counts toward the spend; their values never count
    assert [o.values["HasAns_f1"] for o in completed_within(db, experiment_id, 3000 / 3600)] == [30.0, 50.0]
    assert [o.values["HasAns_f1"] for o in completed_within(db, experiment_id, 2999 / 3600)] == [30.0]
    assert completed_within(db, experiment_id, 999 / 3600) == []

"""The CPU case study's peer and arithmetic: random search through the same objective on Dask,
its hypervolume, and the smallest-within-a-point and best-at-size answers."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from benchmarks.bert_cpu_frontier import best_at_most, hypervolume, smallest_within
from benchmarks.random_search import random_assignments, random_search, sweep_experiment
from optimizer import ExperimentSpec
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from storage import DuckDBStorage, ObservationRecord


def test_random_assignments_cover_the_space_uniformly_on_the_right_scale():
    spec = ExperimentSpec.model_validate(SIZE_VS_ERROR_SPEC)
    rng = np.random.default_rng(0)
    draws = [random_assignments(spec, rng) for _ in range(4000)]
    widths = np.log([draw["width"] for draw in draws])
    assert 16 <= min(draw["width"] for draw in draws) and max(draw["width"] for draw in draws) <= 1024
    # log-uniform: half the draws below the geometric middle of [16, 1024], i.e. 128
    assert np.mean(widths < math.log(128)) == pytest.approx(0.5, abs=0.03)
    assert {draw["depth"] for draw in draws} == set(range(1, 9))
    assert {draw["optimizer"] for draw in draws} == {"adamw", "sgd", "lamb"}
    assert random_assignments(spec, np.random.default_rng(7)) == random_assignments(spec, np.random.default_rng(7))


@pytest.mark.slow
def test_random_search_runs_each_suggestion_once_through_the_objective_and_records_it(tmp_path):
    spec = ExperimentSpec.model_validate({**SIZE_VS_ERROR_SPEC, "metadata": {
        "objective": "paretune.testfunctions:size_vs_error", "trial": {"memory_budget": 1500.0}}})
    db = str(tmp_path / "sweeps.duckdb")
    first = sweep_experiment(db, spec, "random", seed=3)
    assert sweep_experiment(db, spec, "random", seed=3) == first != sweep_experiment(db, spec, "random", seed=4)
    random_search(db, first, budget=12, seed=3)
    with DuckDBStorage(db, read_only=True) as storage:
        observations = storage.observations(first)
        suggestions = storage.list_suggestions(first)
        assert storage.get_experiment(first).name == "demo-size-vs-accuracy-random-seed3"
    assert len(observations) == len(suggestions) == 12
    assert {s.state for s in suggestions} <= {"completed", "failed"}
    rng = np.random.default_rng(3)
    assert [s.assignments for s in suggestions] == [random_assignments(spec, rng) for _ in range(12)]
    for observation in observations:
        size = observation.assignments["width"] * observation.assignments["depth"]
        assert observation.failed == (size > 1500.0)
        if observation.failed:
            assert observation.failure_reason.startswith("out_of_memory")
        else:
            assert observation.values["size"] == pytest.approx(size)
    random_search(db, first, budget=12, seed=3)  # nothing left open: nothing runs again
    with DuckDBStorage(db, read_only=True) as storage:
        assert len(storage.observations(first)) == 12


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

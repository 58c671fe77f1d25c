"""The CPU case study's peer and arithmetic: random search (SigOpt's `type: random`) through the
same tune flow, its hypervolume, and the smallest-within-a-point and best-at-size answers."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest

from benchmarks.bert_cpu_frontier import best_at_most, hypervolume, smallest_within
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

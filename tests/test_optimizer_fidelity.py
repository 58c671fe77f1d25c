"""Trials stopped early (`Observation.fidelity` < 1) are information for `suggest`, never full
results: they change suggestions, steer the search away from a region that is hopeless at low
fidelity, and never make the frontier, the hypervolume's reference or the best solutions."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from paretune.optimizer import ExperimentSpec, Observation, best_solutions, suggest
from paretune.optimizer.space import SearchSpace
from paretune.optimizer.history import FAILED, History, frontier_points, frontier_ranks, metric_ranks
from paretune.optimizer.suggest import _reference_point

SPEC = ExperimentSpec.model_validate({
    "name": "stopped",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
                   {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "acc", "objective": "maximize", "threshold": 0.3},
                {"name": "size", "objective": "minimize"}],
})


def truth(x: float, y: float) -> dict[str, float]:
    """Accuracy grows with x and y, size with x: a front along x at y = 1."""
    return {"acc": 0.5 * x + 0.5 * y, "size": x}


def full_history(seed: int, n: int = 24, low: float = 0.0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    points = rng.uniform([low, 0.0], [1.0, 1.0], size=(n, 2))
    return [Observation(assignments={"x": float(x), "y": float(y)}, values=truth(x, y)) for x, y in points]


def stopped(x: float, y: float, acc: float, fidelity: float = 0.2) -> Observation:
    return Observation(assignments={"x": x, "y": y}, values={"acc": acc, "size": x}, fidelity=fidelity)


@pytest.mark.parametrize("fidelity", [0.0, -0.5, 1.5, float("nan"), float("inf"), True, "half"])
def test_a_fidelity_outside_0_1_is_refused_naming_the_field(fidelity):
    with pytest.raises(ValidationError, match="fidelity"):
        Observation(assignments={"x": 0.5, "y": 0.5}, values={"acc": 0.5, "size": 0.5}, fidelity=fidelity)


def test_fidelity_takes_numpy_numbers_and_a_failure_has_none():
    assert Observation(assignments={}, values={"acc": 1.0}, fidelity=np.float32(0.25)).fidelity == 0.25
    assert Observation(assignments={}, values={"acc": 1.0}).fidelity == 1.0
    with pytest.raises(ValidationError, match="failed observation has no fidelity"):
        Observation(assignments={}, failed=True, fidelity=0.5)


def test_stopped_observations_change_the_suggestions():
    history = full_history(0)
    extra = [stopped(0.9, 0.9, 0.05), stopped(0.8, 0.95, 0.1), stopped(0.95, 0.85, 0.02)]
    assert suggest(SPEC, history + extra, [], 2, seed=5) != suggest(SPEC, history, [], 2, seed=5)


def test_a_stopped_trial_is_never_a_frontier_point_the_reference_or_a_failure():
    space = SearchSpace(SPEC)
    history = full_history(1)
    # better than every full result in both metrics, and far worse: neither may count
    dominant, hopeless = stopped(0.05, 1.0, 0.99, 0.5), stopped(0.9, 0.0, -50.0, 0.1)
    data = History.build(SPEC, space, history + [dominant, hopeless])
    alone = History.build(SPEC, space, history)
    np.testing.assert_array_equal(np.sort(frontier_points(data), axis=0), np.sort(frontier_points(alone), axis=0))
    np.testing.assert_array_equal(_reference_point(data), _reference_point(alone))
    assert data.tiers[-2] != FAILED and data.tiers[-1] != FAILED
    ranks = frontier_ranks(data)
    assert ranks[-2] > max(ranks[i] for i in range(len(history)) if data.tiers[i] == data.tiers[-2])
    single = ExperimentSpec.model_validate({**SPEC.model_dump(exclude_none=True), "metrics": [{"name": "acc"}]})
    best = best_solutions(single, [Observation(assignments=o.assignments, values={"acc": o.values["acc"]},
                                               fidelity=o.fidelity) for o in history + [dominant]])
    assert best[0].fidelity == 1.0


def test_a_region_hopeless_at_low_fidelity_is_avoided():
    """Every trial at x < 0.4 was stopped early, far below the threshold: the next
    suggestions stay out of it, where without those trials the unexplored region draws them."""
    history = full_history(2, low=0.4)
    rng = np.random.default_rng(3)
    hopeless = [stopped(float(x), float(y), -1.0) for x, y in rng.uniform([0.0, 0.0], [0.4, 1.0], size=(12, 2))]

    def share_inside(observations: list[Observation]) -> float:
        picks = [a for seed in range(12) for a in suggest(SPEC, observations, [], 1, seed=seed)]
        return float(np.mean([a["x"] < 0.4 for a in picks]))

    with_stopped, without = share_inside(history + hopeless), share_inside(history)
    assert with_stopped <= 1 / 12 < without


def test_with_tasks_and_one_metric_a_stopped_trial_ranks_among_its_tasks_finished_trials():
    """Values count by their quantile within their task: a stopped trial is placed among the
    finished ones of its task, not in a group of its own (where, alone, it would rank first)."""
    spec = ExperimentSpec.model_validate({**SPEC.model_dump(exclude_none=True),
                                          "metrics": [{"name": "acc", "objective": "maximize"}],
                                          "tasks": [{"name": "quick", "cost": 0.25}, {"name": "full", "cost": 1.0}]})
    finished = [Observation(assignments={"x": 0.1 * i, "y": 0.5}, values={"acc": float(i)}, task="full")
                for i in range(1, 7)]
    quick = [Observation(assignments={"x": 0.1 * i, "y": 0.2}, values={"acc": 0.1 * i}, task="quick")
             for i in range(1, 4)]
    poor = Observation(assignments={"x": 0.9, "y": 0.9}, values={"acc": 0.5}, task="full", fidelity=0.3)
    good = Observation(assignments={"x": 0.8, "y": 0.9}, values={"acc": 5.5}, task="full", fidelity=0.3)
    data = History.build(spec, SearchSpace(spec), finished + quick + [poor, good])
    ranks = metric_ranks(data, 0)
    assert ranks[len(finished) + len(quick)] == len(ranks) - 1  # below every finished trial of its task
    assert ranks[5] < ranks[-1] < ranks[4]  # between the finished 6 and 5
    [assignments] = suggest(spec, finished + quick + [poor, good], [], 1, seed=0)
    assert 0 <= assignments["x"] <= 1 and 0 <= assignments["y"] <= 1

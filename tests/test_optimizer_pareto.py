"""Pareto tools and the space encoding: small cases checked by hand."""

from __future__ import annotations

import numpy as np

from optimizer import ExperimentSpec
from optimizer.pareto import hypervolume_2d, hypervolume_contributions, nondominated_ranks, pareto_front
from optimizer.space import SearchSpace


def test_nondominated_ranks_peel_fronts():
    points = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [4, 4]], dtype=float)
    assert nondominated_ranks(points).tolist() == [0, 0, 0, 1, 2, 3]


def test_hypervolume_and_contributions_2d():
    front = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    reference = np.array([4.0, 4.0])
    assert hypervolume_2d(np.vstack([front, [[3.5, 3.5]]]), reference) == 6.0
    assert hypervolume_contributions(pareto_front(front), reference).tolist() == [1.0, 1.0, 1.0]


def test_space_round_trips_and_respects_integrality():
    spec = ExperimentSpec.model_validate({
        "name": "s", "metrics": [{"name": "y"}],
        "parameters": [{"name": "lr", "type": "double", "bounds": {"min": 1e-4, "max": 1e-1}, "transformation": "log"},
                       {"name": "n", "type": "int", "bounds": {"min": -2, "max": 2}},
                       {"name": "c", "type": "categorical", "categorical_values": ["a", "b", "c"]}]})
    space = SearchSpace(spec)
    assignment = {"lr": 1e-3, "n": -1, "c": "c"}
    decoded = space.decode(space.encode(assignment))
    assert decoded["n"] == -1 and decoded["c"] == "c" and np.isclose(decoded["lr"], 1e-3)
    edges = space.decode(np.array([1.0, 1.0, 2.0]))
    assert edges["n"] == 2 and np.isclose(edges["lr"], 1e-1)
    rows = space.sample_uniform(np.random.default_rng(0), 500)
    values = {space.decode(row)["n"] for row in rows}
    assert values == {-2, -1, 0, 1, 2}

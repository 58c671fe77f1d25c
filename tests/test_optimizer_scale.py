"""`suggest` on long histories: at 10^5 observations it keeps its contract (typed, inside the
bounds and linear constraints, deterministic per seed), every Parzen density it builds has a
bounded number of components, and the shortcuts that bound its work (leading fronts, the
vectorized Pareto front) agree with the exact definitions."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from paretune.optimizer import ExperimentSpec, Observation, suggest
from paretune.optimizer import tpe
from paretune.optimizer.gp import MAX_TRAINING_POINTS, GaussianProcess
from paretune.optimizer.pareto import leading_fronts, nondominated_ranks, pareto_front

SPEC = ExperimentSpec.model_validate({
    "name": "long",
    "parameters": [
        *({"name": f"x{i}", "type": "double", "bounds": {"min": 0.0, "max": 1.0}} for i in range(3)),
        {"name": "lr", "type": "double", "bounds": {"min": 1e-5, "max": 1e-1}, "transformation": "log"},
        {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "width", "type": "categorical", "categorical_values": ["128", "256", "512", "768"]},
    ],
    "metrics": [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize", "threshold": 3.0}],
    "linear_constraints": [{"type": "less_than", "threshold": 1.5,
                            "terms": [{"name": "x0", "weight": 1}, {"name": "x1", "weight": 1}]}],
})


@pytest.fixture(scope="module")
def long_history() -> list[Observation]:
    rng = np.random.default_rng(0)
    history = []
    for _ in range(100_000):
        x = rng.uniform(size=3)
        x[1] = min(x[1], 1.5 - x[0])
        a = {"x0": float(x[0]), "x1": float(x[1]), "x2": float(x[2]),
             "lr": float(math.exp(rng.uniform(math.log(1e-5), math.log(1e-1)))),
             "layers": int(rng.integers(1, 13)), "width": str(rng.choice(["128", "256", "512", "768"]))}
        if rng.uniform() < 0.05:
            history.append(Observation(assignments=a, failed=True))
        else:
            g = 1 + x[1] + x[2]
            history.append(Observation(assignments=a, values={"f1": a["x0"], "f2": g * (1 - math.sqrt(a["x0"] / g))}))
    return history


def test_suggestions_at_100000_observations_keep_the_contract(long_history):
    batch = suggest(SPEC, long_history, [], 2, seed=11)
    assert batch == suggest(SPEC, long_history, [], 2, seed=11)
    assert batch != suggest(SPEC, long_history, [], 2, seed=12)
    for assignments in batch:
        assert set(assignments) == {p.name for p in SPEC.parameters}
        for p in SPEC.parameters:
            value = assignments[p.name]
            if p.type == "categorical":
                assert type(value) is str and value in p.categorical_values
            else:
                assert type(value) is (int if p.type == "int" else float) and p.bounds.min <= value <= p.bounds.max
        assert assignments["x0"] + assignments["x1"] <= 1.5 + 1e-9


def test_every_parzen_density_at_100000_observations_has_a_bounded_number_of_components(long_history, monkeypatch):
    sizes: list[int] = []  # counted through a side channel: wrappers around the two density builders
    build_mixture, axis_fit = tpe.build_mixture, tpe.AxisParzen.fit.__func__

    def counting_mixture(*args, **kwargs):
        mixture = build_mixture(*args, **kwargs)
        sizes.append(len(mixture.log_weights))
        return mixture

    def counting_axis(cls, *args, **kwargs):
        density = axis_fit(cls, *args, **kwargs)
        sizes.append(len(density.weights))  # a categorical axis: one weight per category
        return density

    monkeypatch.setattr(sys.modules["paretune.optimizer.suggest"], "build_mixture", counting_mixture)
    monkeypatch.setattr(tpe.AxisParzen, "fit", classmethod(counting_axis))
    suggest(SPEC, long_history, [], 1, seed=3)
    assert len(sizes) > 10  # the model-based step ran: densities per axis, group and model, and the mixtures
    assert max(sizes) <= tpe.MAX_COMPONENTS + 1  # the prior's component beside the observations'
    assert max(sizes) > 100  # and they are built from many observations, not from a handful


def test_every_gaussian_process_at_100000_observations_is_fit_on_a_bounded_set(long_history, monkeypatch):
    """The objectives', the constraints' and the feasibility (full result) processes alike."""
    sizes: list[int] = []  # counted through a side channel: a wrapper around the fit
    fit_each = GaussianProcess.fit_each.__func__  # what `fit` and the metrics sharing their rows call

    def counting_fit_each(cls, rows, values, *args, **kwargs):
        sizes.extend([len(rows)] * values.shape[1])
        return fit_each(cls, rows, values, *args, **kwargs)

    monkeypatch.setattr(GaussianProcess, "fit_each", classmethod(counting_fit_each))
    suggest(SPEC, long_history, [], 1, seed=3)
    assert len(sizes) >= 3  # two objectives and P(a full result): the history has failures
    assert max(sizes) == MAX_TRAINING_POINTS


def test_bounded_keeps_the_recent_half_and_spreads_the_rest():
    rows = np.arange(1000.0)[:, None]
    kept = tpe.bounded(rows, limit=100)[:, 0]
    assert len(kept) == 100 and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(kept[50:], np.arange(950.0, 1000.0))
    assert kept[0] == 0 and kept[49] == 949 and np.all(np.diff(kept[:50]) >= 19)
    np.testing.assert_array_equal(tpe.bounded(rows[:100], limit=100), rows[:100])


@pytest.mark.parametrize("seed", range(5))
def test_leading_fronts_match_the_exact_ranks_at_the_head(seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 30, size=(3000, 2)).astype(float)  # many ties and copies
    exact, head = nondominated_ranks(points), leading_fronts(points, 200)
    peeled = exact < head.max()
    assert peeled.sum() >= 200
    np.testing.assert_array_equal(head[peeled], exact[peeled])
    assert np.all(exact[~peeled] >= head.max()) and np.all(head[~peeled] == head.max())
    np.testing.assert_array_equal(leading_fronts(points, len(points)), exact)
    front = np.unique(points[exact == 0], axis=0)
    np.testing.assert_array_equal(pareto_front(points), front[np.argsort(front[:, 0], kind="stable")])
    one = rng.integers(0, 9, size=50).astype(float)
    np.testing.assert_array_equal(leading_fronts(one[:, None], 5), nondominated_ranks(one))

"""Pareto tools, the surrogate and the space encoding: small cases checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from paretune.optimizer import ExperimentSpec
from paretune.optimizer.pareto import (hypervolume_2d, hypervolume_contributions, hypervolume_improvements,
                                       leading_fronts, nondominated_ranks, pareto_front)
from paretune.optimizer.space import SearchSpace


def test_nondominated_ranks_peel_fronts():
    points = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [4, 4]], dtype=float)
    assert nondominated_ranks(points).tolist() == [0, 0, 0, 1, 2, 3]


def test_hypervolume_and_contributions_2d():
    front = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    reference = np.array([4.0, 4.0])
    assert hypervolume_2d(np.vstack([front, [[3.5, 3.5]]]), reference) == 6.0
    assert hypervolume_contributions(pareto_front(front), reference).tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("seed", range(6))
def test_each_candidates_improvement_is_the_hypervolume_it_adds(seed):
    """Against the definition, HV(front + candidate) - HV(front), on fronts of 0 to 300 points,
    candidates inside, outside and on the front, and a reference the front may cross."""
    rng = np.random.default_rng(seed)
    front = pareto_front(rng.normal(size=(int(rng.integers(0, 3000)), 2))) if seed else np.zeros((0, 2))
    reference = rng.normal(size=2) + 2.0
    candidates = np.vstack([rng.normal(size=(150, 2)) * 2, front[:20], front[:20] + 1e-3])
    expected = [hypervolume_2d(np.vstack([front, [c]]), reference) - hypervolume_2d(front, reference)
                for c in candidates]
    assert np.allclose(hypervolume_improvements(candidates, front, reference), expected, atol=1e-12)


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


def brute_force_ranks(points):
    """Peel fronts by checking every pair (the definition, O(n^3))."""
    remaining, ranks, rank = set(range(len(points))), np.zeros(len(points), dtype=int), 0
    while remaining:
        front = [i for i in remaining if not any(
            np.all(points[j] <= points[i]) and np.any(points[j] < points[i]) for j in remaining if j != i)]
        ranks[front] = rank
        remaining -= set(front)
        rank += 1
    return ranks


@pytest.mark.parametrize("seed", range(5))
def test_fast_ranks_match_the_definition_with_ties_and_duplicates(seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 5, size=(40, 2)).astype(float)  # coarse: ties and duplicates abound
    assert nondominated_ranks(points).tolist() == brute_force_ranks(points).tolist()
    single = points[:, :1]
    assert nondominated_ranks(single).tolist() == brute_force_ranks(np.column_stack([single, 0 * single])).tolist()


def test_gaussian_process_interpolates_and_knows_where_it_is_unsure():
    from paretune.optimizer.gp import GaussianProcess

    rng = np.random.default_rng(0)
    rows = rng.uniform(0.0, 0.5, size=(40, 2))  # the right half of the square is never seen
    values = np.sin(4 * rows[:, 0]) + rows[:, 1] ** 2
    continuous = np.array([True, True])
    model = GaussianProcess.fit(rows, values, continuous)
    inside = rng.uniform(0.05, 0.45, size=(20, 2))
    mean, std_inside = model.predict(inside)
    assert np.max(np.abs(mean - (np.sin(4 * inside[:, 0]) + inside[:, 1] ** 2))) < 0.1
    _, std_outside = model.predict(np.array([[0.95, 0.95]]))
    assert std_outside[0] > 5 * np.median(std_inside)
    pending = np.array([[0.95, 0.95]])
    _, std_believed = model.believing(pending).predict(pending)
    assert std_believed[0] < 0.2 * std_outside[0]


def test_gaussian_process_on_categorical_axes():
    from paretune.optimizer.gp import GaussianProcess

    rows = np.array([[c, x] for c in (0.0, 1.0, 2.0) for x in np.linspace(0, 1, 8)])
    values = np.where(rows[:, 0] == 1.0, 5.0, 0.0) + rows[:, 1]
    model = GaussianProcess.fit(rows, values, np.array([False, True]))
    mean, _ = model.predict(np.array([[1.0, 0.5], [2.0, 0.5]]))
    assert mean[0] > mean[1] + 3.0


def test_the_hyperparameter_search_kernel_reuses_parts_without_changing_a_number():
    from paretune.optimizer.gp import SearchKernel, axis_distances, kernel_between

    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.uniform(size=(30, 3)), rng.integers(3, size=(30, 2))])
    continuous = np.array([True, True, True, False, False])
    kernel = SearchKernel(axis_distances(rows, rows, continuous), continuous)
    base, changed = np.full(5, 0.6), np.array([0.6, 0.2, 0.6, 1.8, 0.6])
    first, second = kernel(base), kernel(changed)
    first[0, 0] += 1.0  # a caller factoring in place must not touch what is remembered
    assert np.array_equal(kernel(changed), second)
    assert np.array_equal(SearchKernel(axis_distances(rows, rows, continuous), continuous)(base), kernel(base))
    assert np.allclose(kernel(changed), kernel_between(rows, rows, changed, continuous), atol=1e-10)


def test_axis_densities_are_hyperopts_to_the_last_bit():
    from hyperopt.tpe import GMM1_lpdf

    from paretune.optimizer.tpe import AxisParzen

    rng = np.random.default_rng(2)
    density = AxisParzen.fit(rng.uniform(size=200), 0, prior_weight=1.0)
    values = rng.uniform(size=500)
    assert np.array_equal(density.log_pdf(values),
                          GMM1_lpdf(values, density.weights, density.mus, density.sigmas, low=0.0, high=1.0))


def test_axis_draws_are_numpys_weighted_choice_to_the_last_bit():
    """Draws read the weights' cumulative sum, computed once per density: the components and
    categories `Generator.choice(p=weights)` would pick, leaving the generator in the same state."""
    from paretune.optimizer.tpe import AxisParzen

    rng = np.random.default_rng(3)
    categories = AxisParzen.fit(rng.integers(4, size=300).astype(float), 4, prior_weight=1.0)
    ours, numpys = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(categories.sample(ours, 500),
                                  numpys.choice(4, size=500, p=categories.probabilities).astype(float))
    assert ours.random() == numpys.random()
    mixture = AxisParzen.fit(rng.uniform(size=300), 0, prior_weight=1.0)
    picks = mixture.cumulative.searchsorted(np.random.default_rng(8).random(500), side="right")
    np.testing.assert_array_equal(picks, np.random.default_rng(8).choice(len(mixture.weights), size=500,
                                                                         p=mixture.weights))


def test_evidence_of_a_stack_with_a_matrix_that_is_not_positive_definite():
    """A stacked factorization that fails for one matrix scores that one -inf and every other
    one as factoring it alone would."""
    from paretune.optimizer.gp import _evidence, _factors, kernel_between

    rng = np.random.default_rng(4)
    rows = rng.uniform(size=(12, 2))
    targets, known = rng.normal(size=12), np.zeros(12)
    good = kernel_between(rows, rows, np.array([0.3, 0.6]), np.array([True, True]))
    broken = good - 2.0 * np.eye(12)
    alone = [_evidence(_factors(matrix[None].copy(), np.array([noise]), known)[0], targets)
             for matrix, noise in ((good, 1e-2), (good, 1e-1))]
    stacked = [_evidence(factor, targets) for factor in
               _factors(np.stack([good, broken, good]), np.array([1e-2, 1e-2, 1e-1]), known)]
    assert stacked[0] == alone[0] and stacked[2] == alone[1] and stacked[1] == -np.inf
    assert np.isfinite(alone).all()


def test_metrics_fit_on_shared_rows_are_the_models_each_fit_alone_gives():
    """`fit_each` shares the hyperparameter search's factors between metrics; each model (its
    lengthscales, noise and factor) is exactly the one `fit` gives that metric alone, with
    reported noise on one metric and an optional input that the evidence keeps for some."""
    from paretune.optimizer.gp import GaussianProcess

    rng = np.random.default_rng(6)
    rows = np.column_stack([rng.uniform(size=90), rng.integers(0, 3, size=90) / 2, rng.uniform(size=90)])
    rows = np.column_stack([rows, rows[:, 2] - 0.5 * rows[:, 1]])  # a derived input, as a trend's residual
    continuous, optional = np.array([True, False, True, True]), np.array([False, False, False, True])
    values = np.column_stack([np.sin(6 * rows[:, 0]) + rows[:, 1], rows[:, 2] ** 2, rows[:, 0] * rows[:, 2],
                              np.sin(4 * rows[:, 3])])
    variances = np.zeros_like(values)
    variances[::3, 2] = 0.01  # the third metric's diagonal differs: its factors must not be borrowed
    together = GaussianProcess.fit_each(rows, values, continuous, variances, optional=optional)
    for column, model in enumerate(together):
        alone = GaussianProcess.fit(rows, values[:, column].copy(), continuous, variances[:, column].copy(),
                                    optional=optional)
        np.testing.assert_array_equal(model.lengthscales, alone.lengthscales)
        np.testing.assert_array_equal(model.noise, alone.noise)
        np.testing.assert_array_equal(model.cholesky, alone.cholesky)
    assert len({model.lengthscales.tobytes() for model in together}) > 1  # the metrics chose differently
    kept = [np.isfinite(model.lengthscales[3]) for model in together]
    assert any(kept) and not all(kept)  # the derived input kept by one metric's evidence, left out by another's


def test_leading_fronts_and_the_front_on_continuous_points():
    """Without ties the fronts come from one sort by the first objective: the same as lexsort's."""
    points = np.random.default_rng(5).normal(size=(3000, 2))
    exact = nondominated_ranks(points)
    head = leading_fronts(points, 200)
    peeled = exact < head.max()
    np.testing.assert_array_equal(head[peeled], exact[peeled])
    front = points[exact == 0]
    np.testing.assert_array_equal(pareto_front(points), front[np.argsort(front[:, 0])])


# a table of mismatch patterns, and past its limit; with ordinal axes' pairs of places, and past the limit
@pytest.mark.parametrize(("n_nominal", "n_ordinal"), [(2, 0), (14, 0), (2, 2), (2, 4)])
def test_kernel_between_matches_the_per_axis_kernel(n_nominal, n_ordinal, monkeypatch):
    """`kernel_between` agrees with the per-axis kernel; its table of categorical distances
    gives the very numbers summing pair by pair gives."""
    from paretune.optimizer import gp

    rng = np.random.default_rng(6)
    rows = np.column_stack([rng.uniform(size=(25, 2)), rng.integers(3, size=(25, n_nominal)),
                            rng.integers(5, size=(25, n_ordinal)) / 4])
    continuous = np.arange(rows.shape[1]) < 2
    ordinal = np.arange(rows.shape[1]) >= 2 + n_nominal
    lengthscales = rng.choice([0.2, 0.6, 1.8], size=rows.shape[1])
    expected = gp.SearchKernel(gp.axis_distances(rows, rows[:9], continuous, ordinal), continuous)(lengthscales)
    kernel = gp.kernel_between(rows, rows[:9], lengthscales, continuous, ordinal)
    np.testing.assert_allclose(kernel, expected, atol=1e-12)
    monkeypatch.setattr(gp, "MAX_CATEGORICAL_TABLE", 0)  # pair by pair
    np.testing.assert_array_equal(gp.kernel_between(rows, rows[:9], lengthscales, continuous, ordinal), kernel)

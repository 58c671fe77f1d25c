"""The best points' trends (`optimizer.trends`): a double whose best setting moves with a
discrete axis becomes one more input of the Gaussian processes, and only when the trend is
clear."""

from __future__ import annotations

import numpy as np

from benchmarks.problems import PROBLEMS
from paretune.optimizer import ExperimentSpec
from paretune.optimizer.gp import GaussianProcess
from paretune.optimizer.space import INACTIVE, SearchSpace
from paretune.optimizer.trends import FAMILY_ERROR, best_point_trends, residuals

WIDTHS = ["128", "256", "384", "512", "768", "1024"]
SPACE = SearchSpace(ExperimentSpec.model_validate({
    "name": "trends",
    "parameters": [{"name": "hidden", "type": "categorical", "categorical_values": WIDTHS},
                   {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 12}},
                   {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd", "lion"]},
                   {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-6, "max": 1e-2}, "transformation": "log"},
                   {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}}],
    "metrics": [{"name": "exact", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
}))


def _students(rng: np.random.Generator, widths: list[str], learning_rates: list[float]) -> np.ndarray:
    return SPACE.encode_many([{"hidden": w, "n_layers": int(rng.integers(1, 13)), "optimizer": str(rng.choice(["adamw", "sgd"])),
                               "learning_rate": lr, "dropout": float(rng.uniform(0.0, 0.5))}
                              for w, lr in zip(widths, learning_rates)])


def test_the_best_learning_rate_falling_with_the_width_is_a_trend():
    rng = np.random.default_rng(0)
    widths = ["128", "256", "256", "384", "384", "512", "512", "768", "1024", "1024"]
    anchors = _students(rng, widths, [10 ** (-3.0 - 2.5 * np.log10(float(w) / 256) + rng.normal(0, 0.05)) for w in widths])
    by_follower = {SPACE.names[t.follower]: t for t in best_point_trends(SPACE, anchors)}
    trend = by_follower["learning_rate"]  # dropout, drawn at random, may or may not show one by chance
    assert SPACE.names[trend.along] == "hidden" and trend.slope < 0
    # on the trend line every width is alike: the residuals spread far less than the learning rates
    surrogate = SPACE.surrogate_rows(anchors)
    assert residuals((trend,), anchors, surrogate).std() < 0.2 * surrogate[:, trend.follower].std()


def test_unrelated_best_points_rarely_show_a_trend():
    """Independent draws: a trend is a coincidence in at most about FAMILY_ERROR of them."""
    rng = np.random.default_rng(1)
    coincidences = sum(bool(best_point_trends(SPACE, _students(rng, list(rng.choice(WIDTHS, 10)),
                                                               list(10 ** rng.uniform(-6, -2, 10))))) for _ in range(200))
    assert coincidences <= 2 * FAMILY_ERROR * 200


def test_a_space_of_doubles_has_no_trends():
    space = SearchSpace(ExperimentSpec.model_validate(PROBLEMS["dtlz2"].spec))
    anchors = np.linspace(0.0, 1.0, 10)[:, None] * np.ones(space.n_dims)  # every axis perfectly correlated
    assert best_point_trends(space, anchors) == ()


def test_an_inactive_axis_has_no_residual():
    rng = np.random.default_rng(2)
    widths = ["128", "256", "384", "512", "768", "1024"]
    anchors = _students(rng, widths, [10 ** (-3.0 - 2.5 * np.log10(float(w) / 256)) for w in widths])
    trend = next(t for t in best_point_trends(SPACE, anchors) if SPACE.names[t.follower] == "learning_rate")
    rows = anchors.copy()
    rows[0, trend.follower] = INACTIVE
    assert residuals((trend,), rows, SPACE.surrogate_rows(rows))[0, 0] == 0.0


def test_a_residual_that_explains_nothing_is_left_out_of_the_gaussian_process():
    """An optional input (a trend's residual) stays in a model only where the evidence wants it:
    pure noise is left out (an infinite lengthscale), an input the values follow is kept."""
    rng = np.random.default_rng(3)
    rows = rng.uniform(size=(40, 3))
    values = np.sin(6.0 * rows[:, 0])
    continuous, optional = np.ones(3, dtype=bool), np.array([False, False, True])
    noise_left_out = GaussianProcess.fit(rows, values, continuous, optional=optional)
    assert np.isinf(noise_left_out.lengthscales[2]) and np.isfinite(noise_left_out.lengthscales[:2]).all()
    follows = np.sin(6.0 * rows[:, 0]) + np.cos(5.0 * rows[:, 2])
    assert np.isfinite(GaussianProcess.fit(rows, follows, continuous, optional=optional).lengthscales[2])
    # left out, the model is the one fit without the input at all
    without = GaussianProcess.fit(rows[:, :2], values, continuous[:2])
    np.testing.assert_allclose(noise_left_out.predict(rows[:5])[0], without.predict(rows[:5, :2])[0], rtol=1e-9)

"""The best points' trends (`optimizer.trends`): a double whose best setting moves with a
discrete axis becomes one more input of the Gaussian processes, and only when the trend is
clear; the best points moved up the trend are candidates (`suggest._along_trends`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from benchmarks.problems import PROBLEMS
from paretune.optimizer import ExperimentSpec
from paretune.optimizer.gp import GaussianProcess
from paretune.optimizer.space import INACTIVE, SearchSpace
from paretune.optimizer.suggest import TREND_LEVELS, _along_trends
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


def test_a_residual_may_stand_in_for_its_follower():
    """Where the values follow the residual alone, the evidence reads the follower through it
    (the follower's lengthscale infinite), and a wide student at its own learning rate, never
    tried, reads above every student tried, as it scores, and above the reading with both
    inputs beside each other (there its rate is also the rate that ruins narrow students);
    where the follower matters on its own as well, it is kept."""
    rng = np.random.default_rng(0)
    narrow = rng.choice([0.0, 0.2, 0.4], size=24)
    width = np.concatenate([narrow, [0.8, 1.0, 1.0]])  # three wide students, at narrow ones' rates
    rate = np.concatenate([0.7 - 0.5 * narrow + rng.normal(0.0, 0.15, size=24), [0.6, 0.65, 0.55]])
    residual = rate + 0.5 * width  # the best rate falls as students widen
    rows, continuous = np.column_stack([width, rate, residual]), np.ones(3, dtype=bool)
    optional, follower = np.array([False, False, True]), np.array([False, True, False])
    values = 60.0 - 800.0 * (residual - 0.7) ** 2 + 15.0 * width
    swapped = GaussianProcess.fit(rows, values, continuous, optional=optional, replaceable=follower)
    assert np.isinf(swapped.lengthscales[1]) and np.isfinite(swapped.lengthscales[[0, 2]]).all()
    wide_at_its_rate = np.array([[1.0, 0.2, 0.7]])  # scores 75
    beside = GaussianProcess.fit(rows, values, continuous, optional=optional)
    reading = swapped.predict_mean(wide_at_its_rate)[0]
    assert reading > values.max() + 1.0 and reading > beside.predict_mean(wide_at_its_rate)[0] + 1.0
    on_its_own = values - 400.0 * (rate - 0.5) ** 2
    assert np.isfinite(GaussianProcess.fit(rows, on_its_own, continuous, optional=optional,
                                           replaceable=follower).lengthscales[1])


def test_the_best_points_move_up_their_trend_with_the_learning_rate_it_gives():
    """`_along_trends`: each best point one and two widths up, its learning rate moved by the
    trend's slope, so every move keeps its anchor's distance from the trend line (a wider
    student at the learning rate the best students' trend gives its width, not a narrow one's)."""
    rng = np.random.default_rng(0)
    widths = ["128", "256", "256", "384", "384", "512", "512", "768", "1024", "1024"]
    learning_rates = [10 ** (-3.0 - 2.5 * np.log10(float(w) / 256) + rng.normal(0, 0.05)) for w in widths]
    anchors = _students(rng, widths, learning_rates)
    trend = next(t for t in best_point_trends(SPACE, anchors) if SPACE.names[t.follower] == "learning_rate")
    moved = _along_trends(SPACE, SimpleNamespace(trends=(trend,)), anchors)
    levels = np.repeat(TREND_LEVELS, len(anchors))
    start = np.tile(anchors, (len(TREND_LEVELS), 1))
    assert moved.shape == start.shape
    width = SPACE.names.index("hidden")
    np.testing.assert_array_equal(moved[:, width], np.minimum(start[:, width] + levels, len(WIDTHS) - 1))  # up only
    inside = (moved[:, trend.follower] > 0.0) & (moved[:, trend.follower] < 1.0)  # not clipped at a bound
    np.testing.assert_allclose(residuals((trend,), moved, SPACE.surrogate_rows(moved))[inside],
                               residuals((trend,), start, SPACE.surrogate_rows(start))[inside], atol=1e-12)
    wider = moved[:, width] > start[:, width]
    assert np.all(moved[wider, trend.follower] < start[wider, trend.follower])  # wider: a lower learning rate
    others = [d for d in range(SPACE.n_dims) if d not in (width, trend.follower)]
    np.testing.assert_array_equal(moved[:, others], start[:, others])


def test_an_integer_axis_moves_by_its_own_steps_and_stays_in_range():
    layers = SPACE.names.index("n_layers")
    rows = SPACE.encode_many([{"hidden": "256", "n_layers": n, "optimizer": "adamw", "learning_rate": 1e-3,
                               "dropout": 0.1} for n in (1, 6, 12)])
    moved = SPACE.snap(SPACE.moved_levels(rows, layers, 2), np.random.default_rng(0))
    assert [SPACE.decode(row)["n_layers"] for row in moved] == [3, 8, 12]
    assert _along_trends(SPACE, SimpleNamespace(trends=()), rows).shape == (0, SPACE.n_dims)  # no trend, no moves


def test_a_categorical_of_numbers_moves_up_by_value_however_it_is_listed():
    """Widths listed from wide to narrow, as definitions often have them: up is still wider."""
    spec = ExperimentSpec.model_validate({
        "name": "listed-wide-first",
        "parameters": [{"name": "hidden", "type": "categorical", "categorical_values": WIDTHS[::-1]},
                       {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-5, "max": 1e-2}}],
        "metrics": [{"name": "exact", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
    })
    space = SearchSpace(spec)
    rows = space.encode_many([{"hidden": w, "learning_rate": 1e-3} for w in ("128", "512", "1024")])
    for levels, expected in ((1, ["256", "768", "1024"]), (2, ["384", "1024", "1024"]), (-1, ["128", "384", "768"])):
        moved = space.moved_levels(rows, 0, levels)
        assert [space.decode(row)["hidden"] for row in moved] == expected

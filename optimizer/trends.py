"""Trends among the best points: a double parameter whose best setting moves with a discrete
one, as the best learning rate falls when students widen or deepen.

A Gaussian process with one lengthscale per axis reads such a ridge poorly: good narrow
students at high learning rates and bad narrow ones at low learning rates teach it that low
learning rates are bad, and a wide student at the low learning rate it needs reads as bad too
(in a lost `wide_lr` seed, a 768-wide student at its own learning rate read 25 where it scores
76). So each trend the best points show becomes one more input of the Gaussian processes: the
follower's distance from the trend line (`residuals`). On that axis the good students of every
width are alike, and a width not yet trained well is predicted from them.

A trend is read only when it is clear among the best points (`TREND_ANCHORS` of them, by
frontier rank): the correlation's p-value, Bonferroni-corrected for every pair tested, under
`FAMILY_ERROR`. That is not enough: the best points share a history (local moves from common
ancestors), so a training hyperparameter can line up with the depth among them by descent
alone (`distill`'s warm-up did, in 46 calls over three seeds). So each Gaussian process
keeps a residual only where its evidence is higher with it than without it
(`GaussianProcess.fit`'s `optional`), and reads the follower through the residual alone where
the evidence is higher still (`replaceable`: `History.input_replaceable`). A space of doubles
alone has no discrete axis, and no trends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr

from paretune.optimizer.space import INACTIVE, SearchSpace

TREND_ANCHORS = 10  # the best points (by frontier rank) a trend is read from
MIN_FEASIBLE = 5  # fewer feasible observations than this: no best points to read a trend from
MIN_PAIRED = 4  # anchors where both axes are active, at least, for a correlation
FAMILY_ERROR = 0.05  # the chance that any trend taken is a coincidence of the anchors


@dataclass(frozen=True)
class Trend:
    """`follower` (a double axis) moves by `slope` per unit of `along` (an int or an ordinal
    categorical), on the Gaussian processes' scale (`SearchSpace.surrogate_rows`)."""

    along: int
    follower: int
    slope: float


def best_point_trends(space: SearchSpace, anchors: np.ndarray) -> tuple[Trend, ...]:
    """For each double axis, its clearest trend along a discrete ordered axis among `anchors`
    (encoded rows, the best points), if any is clear (the module docstring)."""
    kinds = [p.type for p in space.parameters] + ["conditional"] * len(space.conditionals)
    discrete = np.array([kind in ("int", "categorical") for kind in kinds]) & (space.continuous | space.ordinal)
    doubles = np.array([kind == "double" for kind in kinds])
    tests = int(discrete.sum()) * int(doubles.sum())
    if tests == 0:
        return ()
    points, active = space.surrogate_rows(anchors), anchors != INACTIVE
    trends = []
    for follower in np.flatnonzero(doubles):
        clearest: tuple[float, Trend] | None = None
        for along in np.flatnonzero(discrete):
            paired = active[:, along] & active[:, follower]
            x, y = points[paired, along], points[paired, follower]
            if paired.sum() < MIN_PAIRED or x.std() < 1e-9 or y.std() < 1e-9:
                continue
            correlation = float(np.corrcoef(x, y)[0, 1])
            if _p_value(correlation, int(paired.sum())) * tests < FAMILY_ERROR and (
                    clearest is None or abs(correlation) > clearest[0]):
                clearest = (abs(correlation), Trend(int(along), int(follower), correlation * y.std() / x.std()))
        if clearest is not None:
            trends.append(clearest[1])
    return tuple(trends)


def residuals(trends: tuple[Trend, ...], rows: np.ndarray, surrogate: np.ndarray) -> np.ndarray:
    """Each row's distance from each trend line, (rows, trends); 0 where either axis is
    inactive. `surrogate` is `rows` as the Gaussian processes read them."""
    columns = [np.where((rows[:, t.along] == INACTIVE) | (rows[:, t.follower] == INACTIVE), 0.0,
                        surrogate[:, t.follower] - t.slope * surrogate[:, t.along]) for t in trends]
    return np.column_stack(columns) if columns else np.empty((len(rows), 0))


def _p_value(correlation: float, n: int) -> float:
    """Two-sided p-value of a Pearson correlation over n pairs (Student's t, n - 2 freedoms):
    `scipy.stats.t.sf(statistic, n - 2)` is `stdtr(n - 2, -statistic)`, read here without the
    distribution object's per-call argument handling (the same numbers, a twentieth of the time)."""
    if n <= 2:
        return 1.0
    statistic = abs(correlation) * np.sqrt((n - 2) / max(1.0 - correlation * correlation, 1e-12))
    return float(2.0 * stdtr(n - 2, -statistic))

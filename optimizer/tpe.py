"""Tree-structured Parzen estimators over the unit-cube encoding of a mixed space.

The estimators are hyperopt's (0.3.0, `hyperopt.tpe`), used directly on numpy arrays instead
of through pyll graphs, which are far too slow for a per-call budget of milliseconds:

* `split` splits observations into the good ("below") and bad ("above") groups with
  hyperopt's gamma rule (its `ap_split_trials`): ``min(ceil(gamma * sqrt(n)), 25)`` good ones.
* `adaptive_parzen_normal` gives each observation's bandwidth on every continuous axis (the
  larger gap to its neighbours, clipped by the prior's sigma) and inserts the prior component
  (mu 0.5, sigma 1 on the unit axis, or the parameter's own `prior` mapped to that axis;
  weight `prior_weight`); its `linear_forgetting_weights`
  down-weight all but the 25 most recent observations.
* `normal_cdf` normalizes every truncated Gaussian kernel to the [0, 1] axis (hyperopt's
  `GMM1_lpdf` truncation, applied per component).

Components are joint across axes (one kernel per observation, its product over axes), rather
than hyperopt's independent axes: a failure corner such as "large width and large batch" is
then learned as a corner. Categorical axes use, per component, the observation's category
plus a uniform share, the joint counterpart of hyperopt's `tpe_cat_pseudocounts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hyperopt.tpe import (
    DEFAULT_LF,
    EPS,
    adaptive_parzen_normal,
    categorical_lpdf,
    linear_forgetting_weights,
    normal_cdf,
    tpe_cat_pseudocounts,
)

from paretune.optimizer.space import INACTIVE, SearchSpace

CATEGORY_SMOOTHING = 0.2  # probability mass an observation's kernel spreads over all categories
MAX_COMPONENTS = 256  # observations one Parzen density is built from (plus the prior), however long the history


def bounded(rows: np.ndarray, limit: int = MAX_COMPONENTS) -> np.ndarray:
    """At most `limit` of `rows` (oldest first), so a density costs the same at 10^5
    observations as at a few hundred: the most recent half as they are, and the older ones
    spread evenly over their order (a summary of the old search, which hyperopt's linear
    forgetting already weighs down). Deterministic; fewer rows come back unchanged."""
    if len(rows) <= limit:
        return rows
    recent = limit // 2
    older = np.linspace(0, len(rows) - recent - 1, limit - recent).round().astype(int)
    return np.concatenate([rows[older], rows[len(rows) - recent:]])


@dataclass(frozen=True)
class ParzenMixture:
    """A mixture of joint kernels: component 0 is the prior, the others one observation each."""

    log_weights: np.ndarray  # (K,)
    mus: np.ndarray  # (K, continuous axes)
    sigmas: np.ndarray  # (K, continuous axes)
    log_truncation: np.ndarray  # (K,) log of each kernel's mass inside the unit cube
    categories: np.ndarray  # (K, categorical axes) index, -1 for the prior's uniform kernel
    n_choices: tuple[int, ...]
    continuous: np.ndarray  # which axes of a row are continuous

    def component_log_pdf(self, rows: np.ndarray) -> np.ndarray:
        """log(weight_k * kernel_k(row)) for every row and component, shape (rows, K)."""
        total = np.broadcast_to(self.log_weights - self.log_truncation, (len(rows), len(self.log_weights))).copy()
        x = rows[:, self.continuous]
        for axis in range(x.shape[1]):
            z = (x[:, axis:axis + 1] - self.mus[None, :, axis]) / self.sigmas[None, :, axis]
            total -= 0.5 * z * z + np.log(self.sigmas[:, axis] * np.sqrt(2 * np.pi))[None, :]
        cats = rows[:, ~self.continuous].astype(int)
        for axis, choices in enumerate(self.n_choices):
            own = self.categories[None, :, axis] == cats[:, axis:axis + 1]
            prior = self.categories[None, :, axis] < 0
            smoothing = CATEGORY_SMOOTHING / choices
            log_prior, log_own, log_other = np.log([1.0 / choices, 1.0 - CATEGORY_SMOOTHING + smoothing, smoothing])
            total += np.where(prior, log_prior, np.where(own, log_own, log_other))
        return total

    def log_pdf(self, rows: np.ndarray) -> np.ndarray:
        return _logsumexp(self.component_log_pdf(rows))


def build_mixture(space: SearchSpace, rows: np.ndarray, prior_weight: float = 1.0) -> ParzenMixture:
    """Fit hyperopt's adaptive Parzen estimator to `rows` (oldest first, at most
    `MAX_COMPONENTS` of them: see `bounded`) on every axis."""
    rows = bounded(rows)
    n = len(rows)
    continuous_rows = rows[:, space.continuous]
    continuous_rows = np.where(continuous_rows == INACTIVE, 0.5, continuous_rows)  # inactive: the axis's centre
    priors = [prior for prior, continuous in zip(space.priors, space.continuous) if continuous]
    n_continuous = continuous_rows.shape[1]
    mus = np.empty((n + 1, n_continuous))
    sigmas = np.empty((n + 1, n_continuous))
    for axis, (prior_mu, prior_sigma) in enumerate(priors):
        _, sorted_mus, sorted_sigmas = adaptive_parzen_normal(continuous_rows[:, axis], prior_weight,
                                                              prior_mu, prior_sigma)
        mus[:, axis], sigmas[:, axis] = _unsort(continuous_rows[:, axis], sorted_mus, sorted_sigmas, prior_mu)
    forgetting = linear_forgetting_weights(n, DEFAULT_LF) if n else np.zeros(0)
    weights = np.concatenate([[prior_weight], forgetting])
    log_truncation = np.sum(np.log(np.maximum(normal_cdf(1.0, mus, sigmas) - normal_cdf(0.0, mus, sigmas), 1e-12)),
                            axis=1)
    categories = np.vstack([np.full((1, int((~space.continuous).sum())), -1),
                            rows[:, ~space.continuous].astype(int)])
    return ParzenMixture(np.log(weights / weights.sum()), mus, sigmas, log_truncation, categories,
                         tuple(c for c in space.n_choices if c), space.continuous)


def _unsort(values: np.ndarray, sorted_mus: np.ndarray, sorted_sigmas: np.ndarray,
            prior_mu: float) -> tuple[np.ndarray, np.ndarray]:
    """Map adaptive_parzen_normal's sorted output (prior inserted) back to [prior, *values]."""
    n = len(values)
    if n == 0:
        return sorted_mus, sorted_sigmas
    if n == 1:
        prior_position = 0 if prior_mu < values[0] else 1
        order = np.array([0])
    else:
        order = np.argsort(values)  # the same ordering adaptive_parzen_normal computes
        prior_position = int(np.searchsorted(values[order], prior_mu))
    observation_slots = np.concatenate([np.arange(prior_position), np.arange(prior_position + 1, n + 1)])
    mus = np.empty(n + 1)
    sigmas = np.empty(n + 1)
    mus[0], sigmas[0] = sorted_mus[prior_position], sorted_sigmas[prior_position]
    mus[1 + order] = sorted_mus[observation_slots]
    sigmas[1 + order] = sorted_sigmas[observation_slots]
    return mus, sigmas


def split(ranks: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the good and bad observations: hyperopt's `ap_split_trials` rule
    (``min(ceil(gamma * sqrt(n)), 25)`` lowest ranks are good) in numpy, without its
    per-observation Python loops (the same split: `ranks` are distinct)."""
    n_below = min(int(np.ceil(gamma * np.sqrt(len(ranks)))), DEFAULT_LF)
    below = np.argpartition(ranks, n_below - 1)[:n_below] if n_below < len(ranks) else np.arange(len(ranks))
    good = np.zeros(len(ranks), dtype=bool)
    good[below] = True
    return np.flatnonzero(good), np.flatnonzero(~good)


@dataclass(frozen=True)
class AxisParzen:
    """hyperopt's univariate estimator on one axis: a truncated GMM (continuous) or
    pseudocount-smoothed frequencies (categorical)."""

    weights: np.ndarray
    mus: np.ndarray
    sigmas: np.ndarray
    probabilities: np.ndarray | None  # categorical axes only
    floored_sigmas: np.ndarray | None = field(init=False, repr=False, compare=False)  # continuous axes only
    log_coefficients: np.ndarray | None = field(init=False, repr=False, compare=False)
    cumulative: np.ndarray = field(init=False, repr=False, compare=False)  # of the component or category weights

    def __post_init__(self) -> None:
        """What hyperopt's `GMM1_lpdf` recomputes per call from the components alone (each
        one's log weight over its normalizer and the mass inside [0, 1]), and what
        `Generator.choice` recomputes per draw from the weights (their normalized cumulative
        sum), computed once, in the same operations, so `log_pdf` and `sample` give the same
        numbers."""
        cumulative = np.cumsum(self.weights if self.probabilities is None else self.probabilities)
        cumulative /= cumulative[-1]
        object.__setattr__(self, "cumulative", cumulative)
        if self.probabilities is not None:
            object.__setattr__(self, "floored_sigmas", None)
            object.__setattr__(self, "log_coefficients", None)
            return
        accepted = np.sum(self.weights * (normal_cdf(1.0, self.mus, self.sigmas) - normal_cdf(0.0, self.mus, self.sigmas)))
        normalizers = np.sqrt(2 * np.pi * self.sigmas**2)
        object.__setattr__(self, "floored_sigmas", np.maximum(self.sigmas, EPS))
        object.__setattr__(self, "log_coefficients", np.log(self.weights / normalizers / accepted))

    @classmethod
    def fit(cls, values: np.ndarray, choices: int, prior_weight: float,
            prior: tuple[float, float] = (0.5, 1.0)) -> AxisParzen:
        """Fit to the axis's active values (entries marked INACTIVE are skipped; at most
        `MAX_COMPONENTS` of them, see `bounded`)."""
        values = bounded(values[values != INACTIVE])
        if choices:
            forgetting = linear_forgetting_weights(len(values), DEFAULT_LF) if len(values) else np.zeros(0)
            counts = np.bincount(values.astype(int), weights=forgetting, minlength=choices)
            uniform = np.full(choices, 1.0 / choices)
            return cls(uniform, uniform, uniform, tpe_cat_pseudocounts(counts, prior_weight, uniform, (1,)))
        weights, mus, sigmas = adaptive_parzen_normal(values, prior_weight, *prior)
        return cls(weights, mus, sigmas, None)

    def log_pdf(self, values: np.ndarray) -> np.ndarray:
        """hyperopt's `categorical_lpdf`, or its `GMM1_lpdf` truncated to [0, 1] (of 1-D values)."""
        if self.probabilities is not None:
            return categorical_lpdf(values.astype(int), self.probabilities)
        scaled = values[:, None] - self.mus  # hyperopt's operations, in place (fewer fresh buffers)
        scaled /= self.floored_sigmas
        np.square(scaled, out=scaled)
        scaled *= -0.5
        scaled += self.log_coefficients
        top = scaled.max(axis=1)  # then its `logsum_rows`
        scaled -= top[:, None]
        np.exp(scaled, out=scaled)
        total = scaled.sum(axis=1)
        return np.log(total, out=total) + top

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # what `rng.choice(len(weights), size, p=weights)` draws: uniform draws searched in the cumulative weights
        picks = self.cumulative.searchsorted(rng.random(size), side="right")
        if self.probabilities is not None:
            return picks.astype(float)
        mus, sigmas = self.mus[picks], self.sigmas[picks]
        draws = rng.normal(mus, sigmas)
        for _ in range(20):  # rejection for the truncation (vectorized GMM1); the rest is clipped
            outside = (draws < 0.0) | (draws > 1.0)
            if not outside.any():
                break
            draws[outside] = rng.normal(mus[outside], sigmas[outside])
        return np.clip(draws, 0.0, 1.0)


@dataclass(frozen=True)
class TreeParzenModel:
    """hyperopt's TPE for one ranking: per axis, l from the good group, g from the bad one."""

    good: tuple[AxisParzen, ...]
    bad: tuple[AxisParzen, ...]

    def acquisition(self, rows: np.ndarray) -> np.ndarray:
        """log l(x) - log g(x) summed over axes: TPE's expected-improvement ordering."""
        total = np.zeros(len(rows))
        for axis, (good, bad) in enumerate(zip(self.good, self.bad)):
            active = rows[:, axis] != INACTIVE
            total[active] += good.log_pdf(rows[active, axis]) - bad.log_pdf(rows[active, axis])
        return total

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Plain draws from l, so later scoring (feasibility) has alternatives to choose from."""
        return np.column_stack([good.sample(rng, size) for good in self.good])

    def propose(self, rng: np.random.Generator, n_proposals: int, n_draws: int) -> np.ndarray:
        """`n_proposals` points, each hyperopt's `tpe.suggest` step: on every axis, the best
        l/g of `n_draws` draws from l (axes chosen independently, as hyperopt does)."""
        rows = np.empty((n_proposals, len(self.good)))
        for axis, (good, bad) in enumerate(zip(self.good, self.bad)):
            draws = good.sample(rng, n_proposals * n_draws)
            score = (good.log_pdf(draws) - bad.log_pdf(draws)).reshape(n_proposals, n_draws)
            rows[:, axis] = draws.reshape(n_proposals, n_draws)[np.arange(n_proposals), np.argmax(score, axis=1)]
        return rows


def fit_model(space: SearchSpace, rows: np.ndarray, ranks: np.ndarray, liars: np.ndarray, gamma: float,
              prior_weight: float) -> TreeParzenModel:
    """Split `rows` by `ranks` (lower is better) and fit both densities; `liars` (pending
    points) join the bad group so the model steers away from what is already in flight."""
    below, above = split(ranks, gamma)
    good_rows, bad_rows = rows[below], _bad_group(space, rows, above, liars)
    good = tuple(AxisParzen.fit(good_rows[:, d], c, prior_weight, space.priors[d]) for d, c in enumerate(space.n_choices))
    bad = tuple(AxisParzen.fit(bad_rows[:, d], c, prior_weight, space.priors[d]) for d, c in enumerate(space.n_choices))
    return TreeParzenModel(good, bad)


def _bad_group(space: SearchSpace, rows: np.ndarray, above: np.ndarray, liars: np.ndarray) -> np.ndarray:
    """The bad group's rows, liars last. Without conditional parameters no entry is INACTIVE,
    so the bound `AxisParzen.fit` applies per axis (`bounded`) keeps the same rows on every
    axis: it is applied here first, and only those rows are gathered (gathering all of three
    groups' rows cost tens of milliseconds at 10^5 observations). Either way, the same densities."""
    if space.conditions:
        return np.vstack([rows[above], liars])
    kept = bounded(np.arange(len(above) + len(liars)))
    return np.vstack([rows[above[kept[kept < len(above)]]], liars[kept[kept >= len(above)] - len(above)]])


def _logsumexp(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=1)
    return top + np.log(np.sum(np.exp(values - top[:, None]), axis=1))

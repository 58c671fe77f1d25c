"""A small Gaussian-process surrogate for the Pareto selection step.

TPE proposes candidates; this model predicts every metric at each candidate (mean and
uncertainty), so the selection step can score how much a candidate would extend the frontier.
It works on the unit-cube encoding of `optimizer.space`: a Matern-5/2 kernel whose squared
distance adds, per axis, ((x - x') / lengthscale)^2 on continuous axes and
(x != x') / lengthscale^2 on categorical ones. Hyperparameters are chosen by marginal
likelihood over a coarse grid, then refined per axis (automatic relevance determination),
which stays cheap because the training set is capped (`MAX_TRAINING_POINTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

MAX_TRAINING_POINTS = 200
MAX_SELECTION_POINTS = 100  # hyperparameters are chosen on a subset; the final fit uses all points
_LENGTHSCALES = (0.15, 0.3, 0.6, 1.2)
_NOISES = (1e-4, 1e-2, 1e-1)
_ARD_FACTORS = (1 / 3, 3.0)
_JITTER = 1e-6
PRODUCT_SHARE = 0.5  # of the mixed-space kernel's variance on the joint (product) part


def axis_distances(rows: np.ndarray, others: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Per-axis squared differences (continuous) or mismatches (categorical), (rows, others, axes)."""
    diff = rows[:, None, :] - others[None, :, :]
    return np.where(continuous, diff * diff, (diff != 0).astype(float))


def matern52(squared: np.ndarray) -> np.ndarray:
    """Matern-5/2 of scaled squared distances (unit signal variance)."""
    r = np.sqrt(5.0 * squared)
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


def kernel(distances: np.ndarray, lengthscales: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Kernel matrix from `axis_distances`: on a mixed space, half a Matern over every axis and
    half the sum of a Matern over the continuous axes and one over the categorical axes.

    The sum part lets what was learned about the continuous axes (training hyperparameters,
    say) carry over to categories with few observations, each category adding its own offset;
    a product kernel alone treats every category as a separate function, so a category seen
    only at poor random settings is predicted poor everywhere and never tried again.
    """
    rows, others, axes = distances.shape
    flat = distances.reshape(rows * others, axes)
    inverse = 1.0 / lengthscales**2
    if continuous.all() or not continuous.any():
        return matern52(flat @ inverse).reshape(rows, others)
    on_continuous = flat @ np.where(continuous, inverse, 0.0)
    on_categorical = flat @ np.where(continuous, 0.0, inverse)
    joint = matern52(on_continuous + on_categorical)
    additive = 0.5 * (matern52(on_continuous) + matern52(on_categorical))
    return (PRODUCT_SHARE * joint + (1.0 - PRODUCT_SHARE) * additive).reshape(rows, others)


@dataclass(frozen=True)
class GaussianProcess:
    rows: np.ndarray
    targets: np.ndarray  # standardized
    continuous: np.ndarray
    lengthscales: np.ndarray
    noise: float
    offset: float
    scale: float
    cholesky: np.ndarray
    alpha: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray, values: np.ndarray, continuous: np.ndarray) -> GaussianProcess:
        """Fit to `values` at `rows` (at least two points), choosing hyperparameters by evidence."""
        offset = float(np.mean(values))
        scale = float(np.std(values)) or 1.0
        targets = np.clip((values - offset) / scale, -5.0, 5.0)  # one wild value must not flatten the rest
        distances = axis_distances(rows, rows, continuous)
        lengthscales, noise = _select_hyperparameters(distances, targets, continuous)
        cholesky, alpha = _factor(distances, targets, lengthscales, noise, continuous)
        return cls(rows, targets, continuous, lengthscales, noise, offset, scale, cholesky, alpha)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the metric (original units) at `rows`."""
        cross = kernel(axis_distances(rows, self.rows, self.continuous), self.lengthscales, self.continuous)
        mean = cross @ self.alpha
        solved = solve_triangular(self.cholesky, cross.T, lower=True)
        variance = np.maximum(1.0 - np.sum(solved * solved, axis=0), 1e-12)
        return self.offset + self.scale * mean, self.scale * np.sqrt(variance)

    def believing(self, rows: np.ndarray) -> GaussianProcess:
        """The model after pretending its own mean was observed at `rows` (kriging believer):
        uncertainty collapses around in-flight points, so the next pick goes elsewhere."""
        if len(rows) == 0:
            return self
        believed = (self.predict(rows)[0] - self.offset) / self.scale
        all_rows = np.vstack([self.rows, rows])
        targets = np.concatenate([self.targets, believed])
        distances = axis_distances(all_rows, all_rows, self.continuous)
        cholesky, alpha = _factor(distances, targets, self.lengthscales, self.noise, self.continuous)
        return GaussianProcess(all_rows, targets, self.continuous, self.lengthscales, self.noise, self.offset,
                               self.scale, cholesky, alpha)


def _select_hyperparameters(distances: np.ndarray, targets: np.ndarray,
                            continuous: np.ndarray) -> tuple[np.ndarray, float]:
    """Best (lengthscales, noise) by log marginal likelihood: a grid of shared lengthscales and
    noise levels, then one pass of per-axis refinement. Evidence on `MAX_SELECTION_POINTS`
    points spread over the training set ranks hyperparameters as well, at a fraction of the cost."""
    if len(targets) > MAX_SELECTION_POINTS:
        spread = np.linspace(0, len(targets) - 1, MAX_SELECTION_POINTS).astype(int)
        distances, targets = distances[np.ix_(spread, spread)], targets[spread]
    n_axes = distances.shape[2]
    best = max(((_evidence(distances, targets, np.full(n_axes, lengthscale), noise, continuous), lengthscale, noise)
                for lengthscale in _LENGTHSCALES for noise in _NOISES), key=lambda item: item[0])
    evidence, lengthscales, noise = best[0], np.full(n_axes, best[1]), best[2]
    for axis in range(n_axes):
        for factor in _ARD_FACTORS:
            trial = lengthscales.copy()
            trial[axis] *= factor
            trial_evidence = _evidence(distances, targets, trial, noise, continuous)
            if trial_evidence > evidence:
                evidence, lengthscales = trial_evidence, trial
    return lengthscales, noise


def _factor(distances: np.ndarray, targets: np.ndarray, lengthscales: np.ndarray, noise: float,
            continuous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    matrix = kernel(distances, lengthscales, continuous)
    matrix[np.diag_indices_from(matrix)] += noise + _JITTER
    cholesky = np.linalg.cholesky(matrix)
    return cholesky, cho_solve((cholesky, True), targets)


def _evidence(distances: np.ndarray, targets: np.ndarray, lengthscales: np.ndarray, noise: float,
              continuous: np.ndarray) -> float:
    """Log marginal likelihood (up to a constant); -inf where the kernel is not positive definite."""
    try:
        cholesky, alpha = _factor(distances, targets, lengthscales, noise, continuous)
    except np.linalg.LinAlgError:
        return -np.inf
    return -0.5 * float(targets @ alpha) - float(np.sum(np.log(np.diag(cholesky))))


def training_subset(ranks: np.ndarray, limit: int = MAX_TRAINING_POINTS) -> np.ndarray:
    """Indices to train on when there are too many: the best-ranked half, the most recent rest.

    Both matter: the best points shape the model where the frontier is, recent ones where the
    search is now.
    """
    n = len(ranks)
    if n <= limit:
        return np.arange(n)
    best = np.argsort(ranks, kind="stable")[: limit // 2]
    rest = np.setdiff1d(np.arange(n), best)
    return np.sort(np.concatenate([best, rest[-(limit - len(best)):]]))

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
_LENGTHSCALES = (0.15, 0.3, 0.6, 1.2)
_NOISES = (1e-4, 1e-2, 1e-1)
_ARD_FACTORS = (1 / 3, 3.0)
_JITTER = 1e-6


def matern52(rows: np.ndarray, others: np.ndarray, lengthscales: np.ndarray, continuous: np.ndarray) -> np.ndarray:
    """Kernel matrix between `rows` and `others` (unit signal variance)."""
    squared = np.zeros((len(rows), len(others)))
    for axis in range(rows.shape[1]):
        diff = rows[:, axis:axis + 1] - others[None, :, axis]
        if continuous[axis]:
            squared += (diff / lengthscales[axis]) ** 2
        else:
            squared += (diff != 0) / lengthscales[axis] ** 2
    r = np.sqrt(5.0 * squared)
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


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
        best = None
        for lengthscale in _LENGTHSCALES:
            for noise in _NOISES:
                candidate = _evidence(rows, targets, continuous, np.full(rows.shape[1], lengthscale), noise)
                if best is None or candidate[0] > best[0]:
                    best = candidate
        assert best is not None
        for axis in range(rows.shape[1]):  # one pass of per-axis relevance
            for factor in _ARD_FACTORS:
                lengthscales = best[1].copy()
                lengthscales[axis] *= factor
                candidate = _evidence(rows, targets, continuous, lengthscales, best[2])
                if candidate[0] > best[0]:
                    best = candidate
        _, lengthscales, noise, cholesky, alpha = best
        return cls(rows, targets, continuous, lengthscales, noise, offset, scale, cholesky, alpha)

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the metric (original units) at `rows`."""
        cross = matern52(rows, self.rows, self.lengthscales, self.continuous)
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
        _, _, _, cholesky, alpha = _evidence(all_rows, targets, self.continuous, self.lengthscales, self.noise)
        return GaussianProcess(all_rows, targets, self.continuous, self.lengthscales, self.noise, self.offset,
                               self.scale, cholesky, alpha)


def _evidence(rows: np.ndarray, targets: np.ndarray, continuous: np.ndarray, lengthscales: np.ndarray,
              noise: float) -> tuple[float, np.ndarray, float, np.ndarray, np.ndarray]:
    """Log marginal likelihood with the factors that produced it."""
    kernel = matern52(rows, rows, lengthscales, continuous)
    kernel[np.diag_indices_from(kernel)] += noise + _JITTER
    try:
        cholesky = np.linalg.cholesky(kernel)
    except np.linalg.LinAlgError:
        return -np.inf, lengthscales, noise, np.eye(len(rows)), np.zeros(len(rows))
    alpha = cho_solve((cholesky, True), targets)
    log_likelihood = -0.5 * float(targets @ alpha) - float(np.sum(np.log(np.diag(cholesky))))
    return log_likelihood, lengthscales, noise, cholesky, alpha


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

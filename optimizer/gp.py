"""A small Gaussian-process surrogate for the Pareto selection step.

TPE proposes candidates; this model predicts every metric at each candidate (mean and
uncertainty), so the selection step can score how much a candidate would extend the frontier.
It works on the unit-cube encoding of `optimizer.space`. The kernel is Matern-5/2 on scaled
squared distances that add, per axis, ((x - x') / lengthscale)^2 on continuous axes and
(x != x') / lengthscale^2 on categorical ones (((x - x') / lengthscale)^2 on an *ordinal*
categorical, whose inputs are its values' places); on a mixed space, half of it is that joint
kernel and half the sum of one over the continuous axes and one over the categorical axes
(see `_mixed_matern`). Hyperparameters are chosen by marginal likelihood over a coarse grid,
then refined per axis (automatic relevance determination), on at most
`MAX_SELECTION_POINTS` points; the model itself is fit on at most `MAX_TRAINING_POINTS`.
Noise a user reported per observation (SigOpt's `value_stddev`) is added to the diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import get_lapack_funcs, solve_triangular

MAX_TRAINING_POINTS = 200
MAX_SELECTION_POINTS = 64  # hyperparameters are chosen on a subset; the final fit uses all points
PRODUCT_SHARE = 0.5  # of the mixed-space kernel's variance on the joint (product) part
_LENGTHSCALES = (0.15, 0.3, 0.6, 1.2)
_NOISES = (1e-4, 1e-2, 1e-1)
_ARD_FACTORS = (1 / 3, 3.0)
_JITTER = 1e-6
MAX_CATEGORICAL_TABLE = 4096  # entries of `_categorical_part`'s table (2^nominal axes x each ordinal axis's places^2)


def axis_distances(rows: np.ndarray, others: np.ndarray, continuous: np.ndarray,
                   ordinal: np.ndarray | None = None) -> np.ndarray:
    """Per-axis squared differences (continuous or ordinal) or mismatches (categorical),
    (rows, others, axes)."""
    diff = rows[:, None, :] - others[None, :, :]
    squared = continuous if ordinal is None else continuous | ordinal
    return np.where(squared, diff * diff, (diff != 0).astype(float))


def matern52(squared: np.ndarray) -> np.ndarray:
    """Matern-5/2 of scaled squared distances (unit signal variance)."""
    return _matern52_in_place(5.0 * squared, scaled=True)


def _matern52_in_place(squared: np.ndarray, scaled: bool = False) -> np.ndarray:
    """`matern52`, overwriting `squared` (already times 5 when `scaled`): (1 + r + r^2 / 3) e^-r
    with r = sqrt(5 squared), the same operations in the same order on fewer fresh buffers
    (each one a few hundred kilobytes at a few hundred rows, whose page faults cost more than
    the arithmetic)."""
    r = squared if scaled else np.multiply(squared, 5.0, out=squared)
    np.sqrt(r, out=r)
    value = r * r
    value /= 3.0
    value += 1.0 + r
    np.exp(np.negative(r, out=r), out=r)
    value *= r
    return value


class SearchKernel:
    """Kernel matrices from `axis_distances` for the lengthscales being chosen.

    Each part of the kernel (the continuous axes' scaled distances, the categorical axes', and
    on a mixed space each one's Matern) depends on its own axes' lengthscales only, so it is
    computed once per distinct value: a per-axis refinement step recomputes just the part whose
    axis changed, and the numbers are those computing every part afresh would give.
    """

    def __init__(self, distances: np.ndarray, continuous: np.ndarray):
        rows, others, axes = distances.shape
        self.flat = distances.reshape(rows * others, axes)
        self.shape = (rows, others)
        self.continuous = continuous
        self.mixed = bool(continuous.any() and not continuous.all())
        self._parts: dict[tuple[bytes, bytes], tuple[np.ndarray, np.ndarray | None]] = {}

    def __call__(self, lengthscales: np.ndarray) -> np.ndarray:
        """A fresh matrix (callers may factor it in place)."""
        on_continuous, continuous_matern = self._part(lengthscales, self.continuous)
        on_categorical, categorical_matern = self._part(lengthscales, ~self.continuous)
        joint = matern52(on_continuous + on_categorical)
        if not self.mixed:
            return joint
        return _mixed_matern(joint, continuous_matern, categorical_matern)

    def _part(self, lengthscales: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        key = (axes.tobytes(), lengthscales[axes].tobytes())
        if key not in self._parts:
            inverse = 1.0 / lengthscales**2
            scaled = (self.flat @ np.where(axes, inverse, 0.0)).reshape(self.shape)
            self._parts[key] = (scaled, matern52(scaled) if self.mixed else None)
        return self._parts[key]


def kernel_between(rows: np.ndarray, others: np.ndarray, lengthscales: np.ndarray,
                   continuous: np.ndarray, ordinal: np.ndarray | None = None) -> np.ndarray:
    """The same kernel for fixed lengthscales, by matrix products instead of a per-axis tensor
    (in place where the numbers allow: see `_matern52_in_place`)."""
    inverse = 1.0 / lengthscales**2
    scale = np.sqrt(inverse[continuous])
    a, b = rows[:, continuous] * scale, others[:, continuous] * scale
    on_continuous = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :]
    on_continuous -= 2.0 * a @ b.T
    np.maximum(on_continuous, 0.0, out=on_continuous)
    if continuous.all():
        return _matern52_in_place(on_continuous)
    ordered = np.zeros_like(continuous) if ordinal is None else ordinal & ~continuous
    on_categorical, categorical_matern = _categorical_part(rows, others, inverse, np.flatnonzero(~continuous & ~ordered),
                                                           np.flatnonzero(ordered))
    if not continuous.any():
        return categorical_matern  # the joint kernel: its continuous part is 0
    continuous_matern = matern52(on_continuous)
    on_continuous += on_categorical
    return _mixed_matern(_matern52_in_place(on_continuous), continuous_matern, categorical_matern)


def _categorical_part(rows: np.ndarray, others: np.ndarray, inverse: np.ndarray, nominal: np.ndarray,
                      ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The categorical axes' scaled distances between every row and other (mismatches on the
    `nominal` axes, squared place differences on the `ordered` ones), and their Matern.

    A pair's value depends only on which nominal axes mismatch and which two places meet on
    each ordered axis, so both are read from a table over those combinations, summed in the same
    order as pair by pair (the same numbers): a Matern over a few values instead of one over
    every pair.
    """
    places = [np.unique(np.concatenate([rows[:, axis], others[:, axis]])) for axis in ordered]
    if 2 ** len(nominal) * np.prod([len(axis_places) ** 2 for axis_places in places]) > MAX_CATEGORICAL_TABLE:
        on_categorical = np.zeros((len(rows), len(others)))
        for axis in nominal:
            on_categorical += inverse[axis] * (rows[:, axis, None] != others[None, :, axis])
        for axis in ordered:
            on_categorical += inverse[axis] * (rows[:, axis, None] - others[None, :, axis]) ** 2
        return on_categorical, matern52(on_categorical)
    entry = np.zeros((len(rows), len(others)), dtype=np.uint16)
    for bit, axis in enumerate(nominal):
        entry |= np.left_shift(rows[:, axis, None] != others[None, :, axis], bit, dtype=np.uint16)
    table = np.zeros(2 ** len(nominal))
    for bit, axis in enumerate(nominal):
        table += inverse[axis] * ((np.arange(len(table)) >> bit) & 1).astype(bool)
    for axis, axis_places in zip(ordered, places):  # each one multiplies the table by its pairs of places
        stride, count = len(table), len(axis_places)
        entry += (np.searchsorted(axis_places, rows[:, axis]) * (count * stride)).astype(np.uint16)[:, None]
        entry += (np.searchsorted(axis_places, others[:, axis]) * stride).astype(np.uint16)[None, :]
        squared = (axis_places[:, None] - axis_places[None, :]) ** 2
        table = (table[None, :] + (inverse[axis] * squared.ravel())[:, None]).ravel()
    index = entry.astype(np.intp)
    return _gather(table, index), _gather(matern52(table), index)


def _gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`table[index]` (every index in range), through `np.take` into a buffer of its own: a
    fraction of the time of fancy indexing over a few hundred by a few hundred pairs."""
    gathered = np.empty(index.shape)
    np.take(table, index, out=gathered, mode="clip")
    return gathered


def _mixed_matern(joint: np.ndarray, continuous_matern: np.ndarray, categorical_matern: np.ndarray) -> np.ndarray:
    """On a mixed space, half a Matern over every axis (`joint`) and half the sum of a Matern
    over the continuous axes and one over the categorical axes.

    The sum part lets what was learned about the continuous axes (training hyperparameters,
    say) carry over to categories with few observations, each category adding its own offset.
    A product kernel alone treats every category as a separate function: a category seen only
    at poor random settings is predicted poor everywhere, and is never tried again.
    """
    additive = continuous_matern + categorical_matern
    additive *= 0.5
    additive *= 1.0 - PRODUCT_SHARE
    joint *= PRODUCT_SHARE  # in place (callers pass a fresh joint): the same products and sum as
    joint += additive  # PRODUCT_SHARE * joint + (1 - PRODUCT_SHARE) * (0.5 * (continuous + categorical))
    return joint


@dataclass(frozen=True)
class GaussianProcess:
    rows: np.ndarray
    targets: np.ndarray  # standardized
    continuous: np.ndarray
    ordinal: np.ndarray | None  # categorical axes read by their places (`kernel_between`)
    lengthscales: np.ndarray
    noise: np.ndarray  # per point, standardized units: the chosen level plus any reported noise
    offset: float
    scale: float
    cholesky: np.ndarray
    alpha: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray, values: np.ndarray, continuous: np.ndarray,
            known_variances: np.ndarray | None = None, ordinal: np.ndarray | None = None,
            optional: np.ndarray | None = None, replaceable: np.ndarray | None = None) -> GaussianProcess:
        """Fit to `values` at `rows` (at least two points), choosing hyperparameters by evidence.

        `known_variances` (original units, per point, 0 where not reported) is noise the user
        measured (SigOpt's `value_stddev` squared): it joins the diagonal beside the chosen
        noise level, so a noisy point pulls the posterior less than a precise one. Axes marked
        `optional` (derived inputs, such as a trend's residual) are used only where the evidence
        with them beats the evidence without them, and may stand in for the axes marked
        `replaceable` (a trend's follower) where the evidence prefers that (`_select_hyperparameters`).
        """
        return cls.fit_each(rows, values[:, None], continuous, None if known_variances is None else
                            np.asarray(known_variances, float)[:, None], ordinal, optional, replaceable)[0]

    @classmethod
    def fit_each(cls, rows: np.ndarray, values: np.ndarray, continuous: np.ndarray,
                 known_variances: np.ndarray | None = None, ordinal: np.ndarray | None = None,
                 optional: np.ndarray | None = None, replaceable: np.ndarray | None = None) -> list[GaussianProcess]:
        """`fit` for each column of `values` (and of `known_variances`), on the same `rows`: one
        model per metric, the hyperparameter search's matrices and factors shared
        (`EvidenceSearch`), so each model is the one `fit` gives."""
        chosen = _selection_subset(len(rows))
        search = EvidenceSearch(axis_distances(rows[chosen], rows[chosen], continuous, ordinal), continuous)
        models = []
        for column in range(values.shape[1]):
            metric = np.ascontiguousarray(values[:, column])
            offset = float(np.mean(metric))
            scale = float(np.std(metric)) or 1.0
            targets = np.clip((metric - offset) / scale, -5.0, 5.0)  # one wild value must not flatten the rest
            known = (np.zeros(len(metric)) if known_variances is None else
                     np.ascontiguousarray(known_variances[:, column]) / scale**2)
            lengthscales, noise = _select_hyperparameters(search, targets[chosen], known[chosen], optional, replaceable)
            cholesky, alpha = _factor(kernel_between(rows, rows, lengthscales, continuous, ordinal), targets,
                                      noise + known)
            models.append(cls(rows, targets, continuous, ordinal, lengthscales, noise + known, offset, scale,
                              cholesky, alpha))
        return models

    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the metric (original units) at `rows`."""
        cross = kernel_between(rows, self.rows, self.lengthscales, self.continuous, self.ordinal)
        mean = cross @ self.alpha
        solved = solve_triangular(self.cholesky, cross.T, lower=True, check_finite=False)
        variance = np.maximum(1.0 - np.sum(solved * solved, axis=0), 1e-12)
        return self.offset + self.scale * mean, self.scale * np.sqrt(variance)

    def predict_mean(self, rows: np.ndarray) -> np.ndarray:
        """The posterior mean alone (original units): `predict` without the variance's solve."""
        cross = kernel_between(rows, self.rows, self.lengthscales, self.continuous, self.ordinal)
        return self.offset + self.scale * (cross @ self.alpha)

    def variance_reduction(self, target: np.ndarray, probe: np.ndarray) -> float:
        """How much observing `probe` (one row) would shrink the posterior variance at `target`
        (one row), in standardized units: cov(target, probe)^2 / (var(probe) + noise)."""
        both = np.vstack([target, probe])
        cross = kernel_between(both, self.rows, self.lengthscales, self.continuous, self.ordinal)
        solved = solve_triangular(self.cholesky, cross.T, lower=True, check_finite=False)
        prior = kernel_between(target, probe, self.lengthscales, self.continuous, self.ordinal)[0, 0]
        covariance = prior - float(solved[:, 0] @ solved[:, 1])
        variance = max(1.0 - float(solved[:, 1] @ solved[:, 1]), 1e-12)
        return covariance**2 / (variance + float(np.min(self.noise)))

    def believing(self, rows: np.ndarray) -> GaussianProcess:
        """The model after pretending its own mean was observed at `rows` (kriging believer):
        uncertainty collapses around in-flight points, so the next pick goes elsewhere."""
        if len(rows) == 0:
            return self
        believed = (self.predict_mean(rows) - self.offset) / self.scale
        all_rows = np.vstack([self.rows, rows])
        targets = np.concatenate([self.targets, believed])
        noise = np.concatenate([self.noise, np.full(len(rows), float(np.min(self.noise)))])
        cholesky, alpha = _factor(kernel_between(all_rows, all_rows, self.lengthscales, self.continuous, self.ordinal),
                                  targets, noise)
        return GaussianProcess(all_rows, targets, self.continuous, self.ordinal, self.lengthscales, noise,
                               self.offset, self.scale, cholesky, alpha)


def _selection_subset(n: int) -> np.ndarray:
    """At most `MAX_SELECTION_POINTS` indices spread over the training set: evidence on them
    ranks hyperparameters as well as evidence on all points, at a fraction of the cost."""
    if n <= MAX_SELECTION_POINTS:
        return np.arange(n)
    return np.linspace(0, n - 1, MAX_SELECTION_POINTS).astype(int)


def _select_hyperparameters(search: EvidenceSearch, targets: np.ndarray, known: np.ndarray,
                            optional: np.ndarray | None = None,
                            replaceable: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Best (lengthscales, noise level) by log marginal likelihood: a grid of shared
    lengthscales and noise levels, then one pass of per-axis refinement.

    The `optional` axes are first left out (an infinite lengthscale: the kernel ignores them),
    and kept only if the selection with them reaches a higher evidence. A per-axis lengthscale
    alone cannot leave an axis out: the refinement moves it by a factor of three at most, so
    an input that explains nothing (a trend read into best points that only share a history)
    would still blur the model.

    A third choice keeps the `optional` axes and leaves the `replaceable` ones out: a trend's
    residual in place of its follower. Read beside each other, the two are near collinear among
    students of one width, so a wide student at its own (low) learning rate sits as close to the
    narrow students ruined by that rate as to the good ones at theirs, and reads as their
    average; read through the residual alone, it sits among the good ones. Measured on 120
    seeds of each interaction problem (benchmarks/RESULTS.md, "twenty-first round"): `wide_lr`'s
    hypervolume +0.008 per seed (Wilcoxon p 0.01); `deep_lr` and the rest of the suite within
    noise; how often the accurate end is reached, unchanged.
    """
    none_left_out = np.zeros(search.n_axes, dtype=bool)
    if optional is None or not optional.any():
        return _best_by_evidence(search, targets, known, none_left_out)[1:]
    choices = [_best_by_evidence(search, targets, known, optional),
               _best_by_evidence(search, targets, known, none_left_out)]
    if replaceable is not None and replaceable.any():
        choices.append(_best_by_evidence(search, targets, known, replaceable))
    return max(choices, key=lambda chosen: chosen[0])[1:]


def _best_by_evidence(search: EvidenceSearch, targets: np.ndarray, known: np.ndarray,
                      left_out: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(evidence, lengthscales, noise level): `_select_hyperparameters`' grid and refinement,
    the `left_out` axes at an infinite lengthscale throughout."""
    def shared_at(lengthscale: float) -> np.ndarray:
        return np.where(left_out, np.inf, lengthscale)

    grid = [(shared_at(lengthscale), noise) for lengthscale in _LENGTHSCALES for noise in _NOISES]
    best_evidence, lengthscales, noise = max(
        ((evidence, lengthscales, noise) for evidence, (lengthscales, noise) in
         zip(search.evidences(grid, targets, known), grid)), key=lambda item: item[0])
    for axis in np.flatnonzero(~left_out):
        for factor in _ARD_FACTORS:
            trial = lengthscales.copy()
            trial[axis] *= factor
            [evidence] = search.evidences([(trial, noise)], targets, known)
            if evidence > best_evidence:
                best_evidence, lengthscales = evidence, trial
    return best_evidence, lengthscales, noise


class EvidenceSearch:
    """Log marginal likelihoods of hyperparameter settings on one set of points, for any
    number of metrics' targets.

    A setting's kernel matrix and its Cholesky factor depend on the points, the lengthscales
    and the diagonal (the noise level and any reported noise), never on the targets: the
    metrics fit on the same points share them, and a refinement step that returns to a
    setting already scored (a third, then three times, an axis's lengthscale) or meets one
    another metric scored only solves with its factor. The grid's matrices are factored in
    one stacked call. Each evidence is the number factoring its matrix afresh would give.
    """

    def __init__(self, distances: np.ndarray, continuous: np.ndarray):
        self.kernel = SearchKernel(distances, continuous)
        self.n_axes = distances.shape[2]
        self._factors: dict[tuple[bytes, float, bytes], np.ndarray | None] = {}

    def evidences(self, settings: list[tuple[np.ndarray, float]], targets: np.ndarray,
                  known: np.ndarray) -> list[float]:
        """The evidence of `targets` under each (lengthscales, noise level), up to a constant;
        -inf where the matrix is not positive definite."""
        keys = [(lengthscales.tobytes(), noise, known.tobytes()) for lengthscales, noise in settings]
        missing = {key: setting for key, setting in zip(keys, settings) if key not in self._factors}
        if missing:
            distinct = {lengthscales.tobytes(): lengthscales for lengthscales, _ in missing.values()}
            matrices = {key: self.kernel(lengthscales) for key, lengthscales in distinct.items()}
            self._factors.update(zip(missing, _factors(
                np.stack([matrices[lengthscales.tobytes()] for lengthscales, _ in missing.values()]),
                np.array([noise for _, noise in missing.values()]), known)))
        return [_evidence(self._factors[key], targets) for key in keys]


def _factors(matrices: np.ndarray, noises: np.ndarray, known: np.ndarray) -> list[np.ndarray | None]:
    """The Cholesky factor of each kernel matrix with its noise level and the reported noise on
    its diagonal (the matrices are changed in place); None where one is not positive definite."""
    diagonal = np.arange(matrices.shape[1])
    matrices[:, diagonal, diagonal] += (noises[:, None] + known[None, :]) + _JITTER
    try:
        return list(np.linalg.cholesky(matrices))
    except np.linalg.LinAlgError:  # one failed the stacked call: each on its own, so the others count
        return [_cholesky_or_none(matrix) for matrix in matrices]


def _evidence(cholesky: np.ndarray | None, targets: np.ndarray) -> float:
    """Log marginal likelihood of `targets` (up to a constant) given their kernel's factor."""
    if cholesky is None:
        return -np.inf
    return -0.5 * float(targets @ _cho_solve(cholesky, targets)) - float(np.sum(np.log(np.diag(cholesky))))


def _cholesky_or_none(matrix: np.ndarray) -> np.ndarray | None:
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return None


def _factor(matrix: np.ndarray, targets: np.ndarray, noise: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    diagonal = np.arange(len(matrix))
    matrix[diagonal, diagonal] += noise + _JITTER  # in place: every caller passes a fresh matrix
    cholesky = np.linalg.cholesky(matrix)
    return cholesky, _cho_solve(cholesky, targets)


_POTRS = get_lapack_funcs(("potrs",), (np.zeros((1, 1)),))[0]


def _cho_solve(cholesky: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """scipy's `cho_solve` for a lower factor, without its per-call checks: the same LAPACK
    routine on the same arrays (so the same numbers), a fraction of the overhead on the
    hundreds of small solves the hyperparameter search makes."""
    solved, info = _POTRS(cholesky, targets, lower=True)
    if info != 0:
        raise ValueError(f"illegal value in argument {-info} of LAPACK potrs")
    return solved


def training_subset(ranks: np.ndarray, limit: int = MAX_TRAINING_POINTS) -> np.ndarray:
    """Indices to train on when there are too many: the best-ranked half, the most recent rest.

    Both matter: the best points shape the model where the frontier is, recent ones where the
    search is now.
    """
    n = len(ranks)
    if n <= limit:
        return np.arange(n)
    best = np.argsort(ranks, kind="stable")[: limit // 2]
    others = np.ones(n, dtype=bool)
    others[best] = False
    rest = np.flatnonzero(others)
    return np.sort(np.concatenate([best, rest[-(limit - len(best)):]]))

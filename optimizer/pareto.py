"""Pareto tools for (at most two) minimized objectives: dominance, ranks, 2-D hypervolume."""

from __future__ import annotations

import numpy as np


def dominates(points: np.ndarray) -> np.ndarray:
    """Matrix D with D[i, j] True when point j dominates point i (all <=, one <)."""
    le = np.all(points[None, :, :] <= points[:, None, :], axis=2)
    lt = np.any(points[None, :, :] < points[:, None, :], axis=2)
    return le & lt


def nondominated_ranks(points: np.ndarray, enough: int | None = None) -> np.ndarray:
    """Front index of each point (0 = non-dominated). Peeling stops once `enough` points are
    ranked; the rest get the next rank, which is all a good/bad split needs."""
    n = len(points)
    ranks = np.full(n, n, dtype=int)
    if n == 0:
        return ranks
    dominated_by = dominates(points)
    remaining = np.ones(n, dtype=bool)
    rank, ranked = 0, 0
    while remaining.any() and (enough is None or ranked < enough):
        counts = dominated_by[:, remaining].sum(axis=1)
        front = remaining & (counts == 0)
        ranks[front] = rank
        remaining &= ~front
        ranked += int(front.sum())
        rank += 1
    ranks[remaining] = rank
    return ranks


def pareto_front(points: np.ndarray) -> np.ndarray:
    """The non-dominated points, sorted by the first objective."""
    if len(points) == 0:
        return points.reshape(0, points.shape[1] if points.ndim == 2 else 2)
    front = points[~dominates(points).any(axis=1)]
    front = np.unique(front, axis=0)
    return front[np.argsort(front[:, 0], kind="stable")]


def hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by `points` and bounded by `reference` (both objectives minimized)."""
    inside = points[np.all(points < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    front = pareto_front(inside)
    widths = np.diff(np.append(front[:, 0], reference[0]))
    return float(np.sum(widths * (reference[1] - front[:, 1])))


def hypervolume_contributions(front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Exclusive hypervolume of each point of a 2-D non-dominated `front` sorted by f1."""
    if len(front) == 0:
        return np.zeros(0)
    x = np.append(front[:, 0], reference[0])
    y = np.concatenate([[reference[1]], front[:, 1]])
    return np.maximum((x[1:] - x[:-1]) * (y[:-1] - y[1:]), 0.0)


def hypervolume_improvements(candidates: np.ndarray, front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Hypervolume each candidate would add to `front` (2-D, non-dominated, sorted by f1).

    Vectorized over candidates: clipping the front to a candidate's box keeps it a staircase,
    so the dominated part of the box is a sum over the same ordering for every candidate.
    """
    a, b = candidates[:, :1], candidates[:, 1:2]
    box = np.clip(reference[0] - a, 0.0, None) * np.clip(reference[1] - b, 0.0, None)
    if len(front) == 0:
        return box[:, 0]
    x = np.minimum(np.maximum(front[None, :, 0], a), reference[0])
    y = np.minimum(np.maximum(front[None, :, 1], b), reference[1])
    widths = np.diff(np.concatenate([x, np.full_like(a, reference[0])], axis=1), axis=1)
    covered = np.sum(widths * (reference[1] - y), axis=1)
    return np.maximum(box[:, 0] - covered, 0.0)


def dominance_gap(candidates: np.ndarray, front: np.ndarray) -> np.ndarray:
    """How far each candidate must move (same shift on every objective) to stop being
    dominated by `front`: 0 for candidates already non-dominated."""
    if len(front) == 0:
        return np.zeros(len(candidates))
    shift = np.min(np.max(candidates[:, None, :] - front[None, :, :], axis=2), axis=1)
    return np.maximum(shift, 0.0)

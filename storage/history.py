"""An experiment's progress over its observations: the hypervolume of the feasible frontier
after each one (two optimized metrics), or the best value so far (one); part of the report model.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from paretune.optimizer import ExperimentSpec
from paretune.optimizer.pareto import hypervolume_improvements
from paretune.optimizer.spec import Metric

# With no threshold on an optimized metric, the hypervolume's reference point lies this
# fraction of the observed range beyond the worst feasible value (so extreme points count).
REFERENCE_MARGIN = 0.1


@dataclass(frozen=True)
class HistoryStep:
    observations: int
    value: float


@dataclass(frozen=True)
class History:
    """Hypervolume (two optimized metrics) or best value (one) after each observation.

    Only the steps where it changes are kept; it holds from `observations` until the next step.
    """

    kind: Literal["hypervolume", "best value"]
    metrics: tuple[str, ...]
    steps: tuple[HistoryStep, ...]
    total_observations: int
    reference: dict[str, float] = field(default_factory=dict)
    reference_source: dict[str, str] = field(default_factory=dict)

    @property
    def current(self) -> float | None:
        return self.steps[-1].value if self.steps else None


def experiment_history(spec: ExperimentSpec, feasible: np.ndarray, values: dict[str, np.ndarray]) -> History:
    """The history over every observation in order: `feasible` marks those that count (full-cost,
    meeting every threshold); `values` holds each optimized metric's values (NaN where none)."""
    optimized = spec.optimized_metrics
    names = tuple(m.name for m in optimized)
    total = len(feasible)
    numbers = np.flatnonzero(feasible) + 1
    signs = np.array([-1.0 if m.objective == "maximize" else 1.0 for m in optimized])
    losses = np.column_stack([signs[k] * values[m.name][feasible] for k, m in enumerate(optimized)])
    if len(optimized) == 1:
        (metric,) = optimized
        best = np.minimum.accumulate(losses[:, 0]) if len(losses) else losses[:, 0]
        improved = np.flatnonzero(np.diff(best, prepend=np.inf) < 0)
        steps = tuple(HistoryStep(int(numbers[i]), float(signs[0] * best[i])) for i in improved)
        return History("best value", names, steps, total)
    reference, source = _reference_point(optimized, values, feasible)
    reference_loss = signs * np.array([reference[m.name] for m in optimized])
    steps = tuple(HistoryStep(int(numbers[i]), value) for i, value in _hypervolume_steps(losses, reference_loss))
    return History("hypervolume", names, steps, total, reference, source)


def _reference_point(optimized: tuple[Metric, ...], values_by_metric: dict[str, np.ndarray],
                     feasible: np.ndarray) -> tuple[dict[str, float], dict[str, str]]:
    """The threshold of each optimized metric, else its worst feasible value pushed out by a margin."""
    reference, source = {}, {}
    for metric in optimized:
        if metric.threshold is not None:
            reference[metric.name], source[metric.name] = float(metric.threshold), "threshold"
            continue
        values = values_by_metric[metric.name][feasible]
        if not len(values):
            reference[metric.name], source[metric.name] = 0.0, "no feasible observation yet"
            continue
        low, high = float(values.min()), float(values.max())
        pad = REFERENCE_MARGIN * (high - low) or REFERENCE_MARGIN * abs(high) or 1.0
        reference[metric.name] = low - pad if metric.objective == "maximize" else high + pad
        source[metric.name] = f"worst feasible value {'-' if metric.objective == 'maximize' else '+'} " \
                              f"{REFERENCE_MARGIN:.0%} of the range"
    return reference, source


def _hypervolume_steps(losses: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> list[tuple[int, float]]:
    """(index, hypervolume) after each feasible point that changes it (both losses minimized).

    Kept incrementally: a point dominated by the current front changes nothing; a new front
    point adds its exclusive area and evicts the points it dominates. Chunk by chunk, numpy
    first drops the points the front at the chunk's start already dominates (the front only
    improves, so they stay dominated); the few left go through one binary search each.
    """
    front_x: list[float] = []  # sorted ascending; front_y strictly descending
    front_y: list[float] = []
    volume, steps = 0.0, []
    for start in range(0, len(losses), chunk):
        block = losses[start:start + chunk]
        candidates = np.arange(len(block))
        if front_x:
            before = np.searchsorted(np.array(front_x), block[:, 0], side="right")
            tails = np.array(front_y)[np.maximum(before - 1, 0)]
            candidates = candidates[(before == 0) | (tails > block[:, 1])]
        for k in candidates:
            x, y = float(block[k, 0]), float(block[k, 1])
            if (after := bisect.bisect_right(front_x, x)) > 0 and front_y[after - 1] <= y:
                continue  # dominated (or equalled) by a front point with x' <= x
            gain = float(hypervolume_improvements(np.array([[x, y]]), np.column_stack([front_x, front_y])
                                                  if front_x else np.zeros((0, 2)), reference)[0])
            position = bisect.bisect_left(front_x, x)
            end = position
            while end < len(front_x) and front_y[end] >= y:
                end += 1
            front_x[position:end] = [x]
            front_y[position:end] = [y]
            if gain > 0:
                volume += gain
                steps.append((start + int(k), volume))
    return steps

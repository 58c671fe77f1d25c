"""`num_solutions`: the best k diverse solutions of a single-metric experiment (SigOpt's
multisolution "best assignments"), as a pure function of the history."""

from __future__ import annotations

import math

import numpy as np

from paretune.optimizer.observation import Observation
from paretune.optimizer.space import SearchSpace
from paretune.optimizer.spec import ExperimentSpec

TOP_FRACTION = 0.2  # solutions are chosen among the best fifth of the valid observations (at least k)


def best_solutions(spec: ExperimentSpec, history: list[Observation], k: int | None = None) -> list[Observation]:
    """Up to `k` (default: the spec's `num_solutions`, else 1) good and mutually distant
    observations, best first.

    Only completed, full-cost observations (not stopped early) that meet every threshold count. Among the best
    `TOP_FRACTION` of them (at least k), the best comes first and each next one is the farthest
    (in the search space's encoding) from those already chosen, ties going to the better value.
    """
    if len(spec.optimized_metrics) != 1:
        raise ValueError("best_solutions is for single-metric experiments; use the Pareto frontier otherwise")
    k = k if k is not None else spec.num_solutions or 1
    metric = spec.optimized_metrics[0]
    valid = [o for o in history if not o.failed and spec.is_full_cost(o.task) and o.fidelity == 1.0
             and spec.meets_thresholds(o.values or {})]
    sign = -1.0 if metric.objective == "maximize" else 1.0
    valid.sort(key=lambda o: sign * (o.values or {})[metric.name])
    top = valid[:max(k, math.ceil(TOP_FRACTION * len(valid)))]
    if len(top) <= k:
        return top
    space = SearchSpace(spec)
    distances = space.distances(*(2 * [space.encode_many([o.assignments for o in top])]))
    chosen = [0]
    while len(chosen) < k:
        nearest = distances[:, chosen].min(axis=1)
        nearest[chosen] = -np.inf
        chosen.append(int(np.argmax(nearest)))  # argmax takes the first maximum: the better value
    return [top[i] for i in chosen]

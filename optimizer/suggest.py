"""The one seam between the platform and the search algorithm (contract: DESIGN.md).

One call: validate, then either a start-up suggestion (the given `default_value`s first, then
space-filling random points) or the model-based step:

1. Rank the history per optimized metric, feasible first: completed observations that meet
   every threshold, then those outside an optimized metric's threshold (not in the region of
   interest), then constraint violators by how far they miss, then failures. Failed and
   infeasible points thus sit in every model's bad group instead of being dropped.
2. Fit one hyperopt TPE model per optimized metric (optimizer.tpe); with two metrics, one more
   whose good group is the current frontier (non-dominated rank among feasible points); and a
   joint feasibility model (completed-and-feasible against failed-or-violating).
3. Candidates: from every model, hyperopt-style proposals (best l/g of many draws per axis)
   plus plain draws from l. Each is scored by the frontier model's log l/g (the metric's own
   with one metric: plain TPE) plus twice log P(feasible).
4. Pending points and the batch's earlier picks are liars in every bad group (constant liar),
   and exact repeats of tried or in-flight points are never proposed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.observation import Observation, validate_assignments, validate_history
from optimizer.pareto import nondominated_ranks
from optimizer.space import SearchSpace
from optimizer.spec import ExperimentSpec
from optimizer.tpe import build_mixture, fit_model

FAILED, VIOLATES_CONSTRAINT, OUTSIDE_THRESHOLD, FEASIBLE = 3, 2, 1, 0
FEASIBILITY_WEIGHT = 2.0  # a failed trial wastes its whole cost: weigh P(feasible) above one TPE ratio


def suggest(
    spec: ExperimentSpec,
    history: list[Observation],
    pending: list[dict[str, Any]],
    n: int = 1,
    seed: int | None = None,
    *,
    n_startup: int | None = None,
    n_candidates: int = 96,
    n_proposals: int = 8,
    gamma: float = 1.0,
    prior_weight: float = 1.0,
) -> list[dict[str, Any]]:
    """Return `n` new assignments. Pure: same inputs and seed, same output.

    `n_startup` random suggestions come first (default scales with the number of tunable
    parameters); `n_candidates` are drawn per model; `gamma` sets hyperopt's good-group size
    (ceil(gamma * sqrt(n)), at most 25).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    validate_history(spec, history)
    pending = [validate_assignments(spec, assignments) for assignments in pending]
    rng = np.random.default_rng(seed)
    space = SearchSpace(spec)
    startup = n_startup if n_startup is not None else min(max(space.n_dims + 4, 8), 20)
    data = _History.build(spec, space, history)
    in_flight = space.encode_many(pending)
    batch: list[dict[str, Any]] = []
    for _ in range(n):
        taken = np.vstack([data.rows, in_flight])
        if space.n_dims == 0:
            row = np.zeros(0)
        elif space.defaults and not _defaults_tried(space, taken):
            row = _with_defaults(space, _space_filling(space, taken, rng))
        elif len(taken) < startup or data.n_completed == 0:
            row = _space_filling(space, taken, rng)
        else:
            row = _model_based(space, data, in_flight, rng, n_proposals, n_candidates, gamma, prior_weight)
        in_flight = np.vstack([in_flight, row[None, :]])
        batch.append(space.decode(row))
    return batch


@dataclass(frozen=True)
class _History:
    """The history as arrays: encoded rows, a feasibility tier, objectives in minimization form."""

    rows: np.ndarray
    tiers: np.ndarray
    objectives: np.ndarray  # (n, optimized metrics); nan where failed
    shortfall: np.ndarray  # how far each observation misses the thresholds (constraint or optimized)
    thresholds: np.ndarray  # optimized metrics' thresholds in minimization form, nan if none

    @property
    def n_completed(self) -> int:
        return int(np.sum(self.tiers != FAILED))

    @classmethod
    def build(cls, spec: ExperimentSpec, space: SearchSpace, history: list[Observation]) -> _History:
        optimized, constraints = spec.optimized_metrics, spec.constraint_metrics
        signs = np.array([1.0 if m.objective == "minimize" else -1.0 for m in optimized])
        objectives = np.full((len(history), len(optimized)), np.nan)
        tiers = np.full(len(history), FAILED)
        shortfall = np.zeros(len(history))
        scales = _metric_scales(spec, history)
        for i, observation in enumerate(history):
            if observation.failed:
                continue
            values = observation.values or {}
            objectives[i] = signs * np.array([values[m.name] for m in optimized])
            constraint_miss = sum(_miss(m, values[m.name]) / scales[m.name] for m in constraints)
            optimized_miss = sum(_miss(m, values[m.name]) / scales[m.name] for m in optimized)
            if constraint_miss > 0:
                tiers[i], shortfall[i] = VIOLATES_CONSTRAINT, constraint_miss
            elif optimized_miss > 0:
                tiers[i], shortfall[i] = OUTSIDE_THRESHOLD, optimized_miss
            else:
                tiers[i] = FEASIBLE
        thresholds = np.array([s * m.threshold if m.threshold is not None else np.nan for s, m in zip(signs, optimized)])
        rows = space.encode_many([o.assignments for o in history])
        return cls(rows, tiers, objectives, shortfall, thresholds)


def _miss(metric: Any, value: float) -> float:
    if metric.threshold is None or metric.meets(value):
        return 0.0
    return abs(value - metric.threshold)


def _metric_scales(spec: ExperimentSpec, history: list[Observation]) -> dict[str, float]:
    """Spread of each metric over the history, so misses on different metrics add up fairly."""
    scales = {}
    for metric in spec.required_metrics:
        values = [o.values[metric.name] for o in history if not o.failed and o.values]
        spread = float(np.std(values)) if len(values) > 1 else 0.0
        scales[metric.name] = spread if spread > 0 else max(abs(metric.threshold or 0.0), 1.0)
    return scales


# -- start-up ------------------------------------------------------------------------------------

def _defaults_tried(space: SearchSpace, taken: np.ndarray) -> bool:
    default_row = space.encode({p.name: space.defaults.get(p.name, _any_value(p)) for p in space.parameters})
    columns = [d for d, p in enumerate(space.parameters) if p.name in space.defaults]
    return bool(np.any(np.all(np.isclose(taken[:, columns], default_row[columns]), axis=1))) if len(taken) else False


def _any_value(parameter: Any) -> Any:
    if parameter.type == "categorical":
        return parameter.categorical_values[0]
    return int(parameter.bounds.min) if parameter.type == "int" else parameter.bounds.min


def _with_defaults(space: SearchSpace, row: np.ndarray) -> np.ndarray:
    encoded = space.encode({p.name: space.defaults.get(p.name, _any_value(p)) for p in space.parameters})
    for d, p in enumerate(space.parameters):
        if p.name in space.defaults:
            row[d] = encoded[d]
    return row


def _space_filling(space: SearchSpace, taken: np.ndarray, rng: np.random.Generator, draws: int = 64) -> np.ndarray:
    """The random draw farthest from everything tried or in flight (maximin over `draws`)."""
    candidates = space.sample_uniform(rng, draws)
    if len(taken) == 0:
        return candidates[0]
    return candidates[int(np.argmax(space.distances(candidates, taken).min(axis=1)))]


# -- the model-based step ------------------------------------------------------------------------

def _model_based(space: SearchSpace, data: _History, in_flight: np.ndarray, rng: np.random.Generator,
                 n_proposals: int, n_candidates: int, gamma: float, prior_weight: float) -> np.ndarray:
    n_metrics = data.objectives.shape[1]
    models = [fit_model(space, data.rows, _metric_ranks(data, m), in_flight, gamma, prior_weight)
              for m in range(n_metrics)]
    proposers = list(models)
    if n_metrics > 1:
        proposers.append(fit_model(space, data.rows, _frontier_ranks(data), in_flight, gamma, prior_weight))
    candidates = space.snap(np.vstack([np.vstack([model.propose(rng, n_proposals, n_candidates),
                                                  model.sample(rng, n_proposals * 4)]) for model in proposers]))
    candidates = _unseen(space, candidates, np.vstack([data.rows, in_flight]))
    if len(candidates) == 0:
        return _space_filling(space, np.vstack([data.rows, in_flight]), rng)
    feasibility = _log_feasibility(space, data, candidates, prior_weight)
    scores = proposers[-1].acquisition(candidates) + FEASIBILITY_WEIGHT * feasibility
    return candidates[int(np.argmax(scores))]


def _metric_ranks(data: _History, metric: int) -> np.ndarray:
    """Feasible first: (tier, objective or shortfall) ordered, returned as ranks."""
    within = np.where(data.tiers <= OUTSIDE_THRESHOLD, data.objectives[:, metric], data.shortfall)
    within = np.where(data.tiers == OUTSIDE_THRESHOLD, data.shortfall, within)
    return _ranks(data.tiers, np.nan_to_num(within))


def _frontier_ranks(data: _History) -> np.ndarray:
    """Feasible first, then non-dominated rank of the objectives among the feasible ones."""
    within = data.shortfall.copy()
    feasible = np.flatnonzero(data.tiers == FEASIBLE)
    if len(feasible):
        within[feasible] = nondominated_ranks(data.objectives[feasible], enough=25)
    return _ranks(data.tiers, within)


def _ranks(tiers: np.ndarray, within: np.ndarray) -> np.ndarray:
    order = np.lexsort((within, tiers))
    ranks = np.empty(len(order))
    ranks[order] = np.arange(len(order))
    return ranks


def _unseen(space: SearchSpace, candidates: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Drop candidates that repeat a tried or in-flight point (or each other)."""
    candidates = np.unique(candidates, axis=0)
    if len(taken) == 0:
        return candidates
    return candidates[space.distances(candidates, taken).min(axis=1) > 1e-9]


def _log_feasibility(space: SearchSpace, data: _History, candidates: np.ndarray, prior_weight: float) -> np.ndarray:
    """log P(completed and meets constraints | x), from Parzen densities of both groups."""
    bad = data.tiers >= VIOLATES_CONSTRAINT
    if not bad.any():
        return np.zeros(len(candidates))
    good_rows, bad_rows = data.rows[~bad], data.rows[bad]
    log_good = build_mixture(space, good_rows, prior_weight).log_pdf(candidates) + math.log(len(good_rows) + prior_weight)
    log_bad = build_mixture(space, bad_rows, prior_weight).log_pdf(candidates) + math.log(len(bad_rows) + prior_weight)
    return log_good - np.logaddexp(log_good, log_bad)

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
   plus plain draws from l, and a few uniform draws for exploration; with two metrics, also
   the best points perturbed, crossed, and with one axis redrawn (`_near_frontier`).
4. The Pareto selection step (two metrics): a Gaussian process per optimized metric predicts
   each candidate's values; the candidate with the largest expected hypervolume improvement
   over the current feasible frontier wins, weighted by its probability of meeting every
   constraint (a Gaussian process per constraint metric) and of giving a full result (Parzen
   densities of failed or stopped points against the others); posterior draws do not pass an end of the front that
   is a bound (`_draw_floor`). Thresholds on optimized metrics are the hypervolume's
   reference point, so only the part of the frontier beyond them counts; a metric without a
   threshold is measured from past the worst completed value. With one metric, or when no
   candidate is expected to improve anything, candidates are ranked as in plain TPE: the
   (frontier) model's log l/g plus twice log P(feasible).
5. Pending points and the batch's earlier picks are liars in every bad group (constant liar)
   and believed at their predicted values by the Gaussian processes (kriging believer); exact
   repeats of tried or in-flight points are never proposed.

SigOpt's definition keys: every candidate is snapped to its grid and conditionals (inactive
parameters marked, see optimizer.space) and dropped if it breaks a linear constraint; priors
shape start-up draws and each axis's Parzen prior; reported `value_stddevs` are per-point
noise in the Gaussian processes. With tasks, the task cost is one more Gaussian-process input,
the frontier is made of full-task observations only, and `choose_task` says where each
proposal runs. A trial stopped early (`Observation.fidelity` < 1) is a cheaper observation
(its cost is its task's times its fidelity): it ranks in every TPE model by its checkpoint's
values, and the Gaussian processes read them as a noisy view of its full result (noise
(1 - fidelity) x the metric's spread, the per-point noise reported `value_stddevs` use); it
never makes the frontier or the hypervolume's reference, and it is not a failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scipy.special import ndtr

from paretune.optimizer.gp import GaussianProcess, training_subset
from paretune.optimizer.observation import Observation, validate_assignments, validate_history
from paretune.optimizer.pareto import hypervolume_improvements, nondominated_ranks, pareto_front
from paretune.optimizer.space import INACTIVE, SearchSpace
from paretune.optimizer.spec import ExperimentSpec
from paretune.optimizer.tpe import build_mixture, fit_model

FAILED, VIOLATES_CONSTRAINT, OUTSIDE_THRESHOLD, FEASIBLE = 3, 2, 1, 0
FEASIBILITY_WEIGHT = 2.0  # a failed trial wastes its whole cost: weigh P(feasible) above one TPE ratio
EXPLORATION_DRAWS = 32  # uniform candidates beside TPE's, so the surrogate can pick unexplored regions
LOCAL_STEP = 0.05  # spread of the local candidates around the best points, on the unit axes
LOCAL_ANCHORS = 10  # how many of the best points (by frontier rank) local candidates start from
LOCAL_DRAWS = 96  # perturbations of the best points per call
CROSSOVER_DRAWS = 48  # crossovers of two of the best points per call
REDRAW_DRAWS = 16  # best points with one axis redrawn over its whole range, per call
POSTERIOR_SPREAD = 0.5  # posterior draws at half their spread: full spread over-rewards the boundary, where the surrogate is least sure
HYPERVOLUME_SAMPLES = 64  # posterior draws per candidate for the expected hypervolume improvement
FULL_TASK_SHARE = 0.5  # multitask: the least share of the cost spent that goes to full-task observations


@dataclass(frozen=True)
class Proposal:
    """One suggestion: its assignments (SigOpt's shape) and the task to run it at (None
    without tasks)."""

    assignments: dict[str, Any]
    task: str | None = None


def suggest(
    spec: ExperimentSpec,
    history: list[Observation],
    pending: list[dict[str, Any]],
    n: int = 1,
    seed: int | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Return `n` new assignments (see `propose`, which also says at which task to run each)."""
    return [proposal.assignments for proposal in propose(spec, history, pending, n, seed, **options)]


def propose(
    spec: ExperimentSpec,
    history: list[Observation],
    pending: list[dict[str, Any]],
    n: int = 1,
    seed: int | None = None,
    *,
    n_startup: int | None = None,
    n_candidates: int = 24,
    n_proposals: int = 4,
    gamma: float = 1.0,
    prior_weight: float = 1.0,
) -> list[Proposal]:
    """Return `n` new proposals. Pure: same inputs and seed, same output.

    `n_startup` random suggestions come first (default scales with the number of tunable
    parameters); `n_candidates` are drawn per model; `gamma` sets hyperopt's good-group size
    (ceil(gamma * sqrt(n)), at most 25). Every proposal satisfies the linear constraints and
    grids, and carries only the parameters its conditionals make active.
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
    spent = [spec.task_cost(o.task) * o.fidelity for o in history]
    batch: list[Proposal] = []
    for _ in range(n):
        taken = np.vstack([data.rows, in_flight])
        if space.n_dims == 0:
            row = np.zeros(0)
        elif len(space.default_axes) and len(taken) < startup and not _defaults_tried(space, taken):
            row = _with_defaults(space, taken, rng)
        elif len(taken) < startup or data.n_completed == 0:
            row = _space_filling(space, taken, rng)
        else:
            row = _model_based(space, data, in_flight, rng, n_proposals, n_candidates, gamma, prior_weight)
        task = choose_task(spec, space, data, row, spent, len(taken) < startup)
        spent.append(spec.task_cost(task))
        in_flight = np.vstack([in_flight, row[None, :]])
        batch.append(Proposal(space.decode(row), task))
    return batch


@dataclass(frozen=True)
class _History:
    """The history as arrays: encoded rows, a feasibility tier, objectives in minimization form."""

    rows: np.ndarray
    tiers: np.ndarray
    objectives: np.ndarray  # (n, optimized metrics); nan where failed
    shortfall: np.ndarray  # how far each observation misses the thresholds (constraint or optimized)
    thresholds: np.ndarray  # optimized metrics' thresholds in minimization form, nan if none
    constraint_values: np.ndarray  # (n, constraint metrics) in minimization form; nan where failed
    constraint_limits: np.ndarray  # constraint thresholds in minimization form
    variances: np.ndarray  # (n, optimized + constraint metrics): reported value_stddev squared, 0 if none
    task_costs: np.ndarray  # each observation's task cost (1: the full task)
    fidelities: np.ndarray  # the fraction of its training each observation reached (< 1: stopped early)
    multitask: bool  # the experiment has tasks: the Gaussian processes take the task cost as an input

    @property
    def n_completed(self) -> int:
        return int(np.sum(self.tiers != FAILED))

    @property
    def full(self) -> np.ndarray:
        """The full results: the full task, run to the end. Only these make the frontier."""
        return (self.task_costs == 1.0) & (self.fidelities == 1.0)

    def inputs(self, rows: np.ndarray, task_costs: np.ndarray | float = 1.0) -> np.ndarray:
        """What the Gaussian processes see: the rows, plus the task cost as one more axis when
        the experiment has tasks (so cheap observations inform predictions at the full task)."""
        if not self.multitask:
            return rows
        return np.column_stack([rows, np.broadcast_to(np.asarray(task_costs, dtype=float), (len(rows),))])

    def input_continuous(self, space: SearchSpace) -> np.ndarray:
        return np.append(space.continuous, True) if self.multitask else space.continuous

    @classmethod
    def build(cls, spec: ExperimentSpec, space: SearchSpace, history: list[Observation]) -> _History:
        optimized, constraints = spec.optimized_metrics, spec.constraint_metrics
        required = (*optimized, *constraints)
        completed = np.array([not o.failed for o in history], dtype=bool)
        table = np.full((len(history), len(required)), np.nan)  # every required metric, as reported
        if completed.any():
            table[completed] = [[o.values[m.name] for m in required] for o in history if not o.failed]  # type: ignore[index]
        misses, spreads = [], []
        for column, metric in enumerate(required):
            values = table[completed, column]
            spread = float(np.std(values)) if len(values) > 1 else 0.0
            spreads.append(spread)
            scale = spread if spread > 0 else max(abs(metric.threshold or 0.0), 1.0)
            met = np.ones(len(history), dtype=bool) if metric.threshold is None else (
                table[:, column] >= metric.threshold if metric.objective == "maximize" else table[:, column] <= metric.threshold)
            misses.append(np.where(met | ~completed, 0.0, np.abs(table[:, column] - (metric.threshold or 0.0))) / scale)
        constraint_miss, optimized_miss = np.zeros(len(history)), np.zeros(len(history))
        for column in range(len(optimized), len(required)):  # summed in metric order, as a person would
            constraint_miss = constraint_miss + misses[column]
        for column in range(len(optimized)):
            optimized_miss = optimized_miss + misses[column]
        tiers = np.where(~completed, FAILED, np.where(constraint_miss > 0, VIOLATES_CONSTRAINT,
                                                      np.where(optimized_miss > 0, OUTSIDE_THRESHOLD, FEASIBLE)))
        shortfall = np.where(tiers == VIOLATES_CONSTRAINT, constraint_miss,
                             np.where(tiers == OUTSIDE_THRESHOLD, optimized_miss, 0.0))
        signs = np.array([1.0 if m.objective == "minimize" else -1.0 for m in required])
        signed = table * signs
        thresholds = np.array([signs[j] * m.threshold if m.threshold is not None else np.nan
                               for j, m in enumerate(optimized)])
        constraint_limits = signs[len(optimized):] * np.array([float(m.threshold) for m in constraints])
        variances = np.zeros((len(history), len(required)))
        for i, observation in enumerate(history):
            if observation.value_stddevs:
                variances[i] = [observation.value_stddevs.get(m.name, 0.0) ** 2 for m in required]
        fidelities = np.array([o.fidelity for o in history], dtype=float)
        variances += ((1.0 - fidelities)[:, None] * np.array(spreads)[None, :]) ** 2
        task_costs = np.array([spec.task_cost(o.task) for o in history]) if spec.tasks else np.ones(len(history))
        rows = space.encode_many([o.assignments for o in history])
        return cls(rows, tiers, signed[:, :len(optimized)], shortfall, thresholds, signed[:, len(optimized):],
                   constraint_limits, variances, task_costs, fidelities, bool(spec.tasks))


# -- start-up ------------------------------------------------------------------------------------

def choose_task(spec: ExperimentSpec, space: SearchSpace, data: _History, row: np.ndarray, spent: list[float],
                startup: bool) -> str | None:
    """The task to run `row` at: the one whose observation is expected to teach the most about
    the full task at `row`, per unit of cost (the reduction of the full task's posterior
    variance there, divided by the task's cost), from a Gaussian process with the task cost as
    an input. Start-up points go to the cheapest task. Whatever that says, full-task
    observations keep at least `FULL_TASK_SHARE` of the cost spent: the frontier and "best"
    are made of them alone.
    """
    if not spec.tasks:
        return None
    full = spec.full_task
    if sum(cost for cost in spent if cost == 1.0) <= FULL_TASK_SHARE * sum(spent):
        return full
    tasks = sorted(spec.tasks, key=lambda t: t.cost)
    completed = np.flatnonzero(data.tiers != FAILED)
    if startup or len(np.unique(data.task_costs[completed])) < 2 or not data.full[completed].any():
        return tasks[0].name
    subset = completed[training_subset(_frontier_ranks(data)[completed])]
    model = GaussianProcess.fit(data.inputs(data.rows[subset], data.task_costs[subset]), data.objectives[subset, 0],
                                data.input_continuous(space), data.variances[subset, 0])
    at_full = data.inputs(row[None, :])
    value = [model.variance_reduction(at_full, data.inputs(row[None, :], task.cost)) / task.cost for task in tasks]
    return tasks[int(np.argmax(value))].name


def _defaults_tried(space: SearchSpace, taken: np.ndarray) -> bool:
    """Whether some tried or pending row has every default (one its conditions leave inactive
    cannot be set, so it counts as tried)."""
    if not len(taken):
        return False
    columns = taken[:, space.default_axes]
    return bool(np.any(np.all(np.isclose(columns, space.default_units) | (columns == INACTIVE), axis=1)))


def _with_defaults(space: SearchSpace, taken: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The space-filling point with every `default_value` in place (and a valid rest)."""
    draws = space.sample(rng, 64)
    draws[:, space.default_axes] = space.default_units
    draws = space.deactivate(draws)
    draws = draws[space.feasible(draws)]
    active = np.all(draws[:, space.default_axes] != INACTIVE, axis=1)
    if active.any():  # conditionals that let every default apply
        draws = draws[active]
    if len(draws) == 0:
        return _space_filling(space, taken, rng)
    if len(taken) == 0:
        return draws[0]
    return draws[int(np.argmax(space.distances(draws, taken).min(axis=1)))]


def _space_filling(space: SearchSpace, taken: np.ndarray, rng: np.random.Generator, draws: int = 64) -> np.ndarray:
    """The random draw farthest from everything tried or in flight (maximin over `draws`)."""
    candidates = space.sample(rng, draws)
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
    frontier_ranks = _frontier_ranks(data)
    if n_metrics > 1:
        proposers.append(fit_model(space, data.rows, frontier_ranks, in_flight, gamma, prior_weight))
    candidates = space.snap(np.vstack([np.vstack([model.propose(rng, n_proposals, n_candidates),
                                                  model.sample(rng, n_proposals * 4)]) for model in proposers]
                                      + [space.sample_uniform(rng, EXPLORATION_DRAWS)]), rng)
    candidates = _unseen(space, candidates[space.feasible(candidates)], np.vstack([data.rows, in_flight]))
    if len(candidates) == 0:
        return _space_filling(space, np.vstack([data.rows, in_flight]), rng)
    if n_metrics > 1 and data.n_completed >= 2:
        local = _near_frontier(space, data, frontier_ranks, rng)
        local = _unseen(space, local[space.feasible(local)], np.vstack([data.rows, in_flight]))
        candidates = np.vstack([candidates, local])
        gains = _expected_hypervolume_gain(space, data, frontier_ranks, in_flight, candidates, rng, prior_weight)
        if np.max(gains) > 0:
            return candidates[int(np.argmax(gains))]
    feasibility = _log_feasibility(space, data, candidates, prior_weight, data.tiers >= VIOLATES_CONSTRAINT)
    scores = proposers[-1].acquisition(candidates) + FEASIBILITY_WEIGHT * feasibility
    return candidates[int(np.argmax(scores))]


def _expected_hypervolume_gain(space: SearchSpace, data: _History, frontier_ranks: np.ndarray, in_flight: np.ndarray,
                               candidates: np.ndarray, rng: np.random.Generator, prior_weight: float) -> np.ndarray:
    """E[hypervolume improvement] x P(meets constraints) x P(a full result), per candidate."""
    completed = np.flatnonzero(data.tiers != FAILED)
    subset = completed[training_subset(frontier_ranks[completed])]
    inputs, continuous = data.inputs(data.rows[subset], data.task_costs[subset]), data.input_continuous(space)
    flight, targets = data.inputs(in_flight), data.inputs(candidates)
    models = [GaussianProcess.fit(inputs, data.objectives[subset, m], continuous, data.variances[subset, m])
              .believing(flight) for m in range(data.objectives.shape[1])]
    predictions = [model.predict(targets) for model in models]
    means = np.column_stack([mean for mean, _ in predictions])
    stds = np.column_stack([std for _, std in predictions])
    believed = np.column_stack([model.predict(flight)[0] for model in models]) if len(in_flight) else means[:0]
    front = pareto_front(np.vstack([_frontier_points(data), believed]))
    reference = _reference_point(data)
    draws = rng.standard_normal((1, HYPERVOLUME_SAMPLES, means.shape[1]))
    samples = means[:, None, :] + POSTERIOR_SPREAD * stds[:, None, :] * draws
    if len(front):
        samples = np.maximum(samples, _draw_floor(data, front, means)[:, None, :])
    gains = hypervolume_improvements(samples.reshape(-1, means.shape[1]), front, reference)
    expected = gains.reshape(len(candidates), HYPERVOLUME_SAMPLES).mean(axis=1)
    probability = np.exp(_log_feasibility(space, data, candidates, prior_weight, _no_full_result(data)))
    n_optimized = data.objectives.shape[1]
    for c, limit in enumerate(data.constraint_limits):
        model = GaussianProcess.fit(inputs, data.constraint_values[subset, c], continuous,
                                    data.variances[subset, n_optimized + c])
        mean, std = model.believing(flight).predict(targets)
        probability *= ndtr((limit - mean) / std)
    return expected * probability


def _no_full_result(data: _History) -> np.ndarray:
    """The observations that gave no full result: failed, or stopped early. Only a full
    result can extend the frontier, so a candidate's expected gain is weighted by the
    probability of one (a stopped trial's values still inform every model; it is no failure)."""
    return (data.tiers == FAILED) | (data.fidelities < 1.0)


def _draw_floor(data: _History, front: np.ndarray, means: np.ndarray) -> np.ndarray:
    """How far each candidate's posterior draws may go, per metric: not past the front's end
    (unless the candidate's mean does) where two observations share that end (to within 1e-6
    of the metric's range), a bound the search keeps hitting (f1 = x0 = 0 on ZDT, a metric at
    0 in DTLZ2's corners); elsewhere free.

    Past the front's end, a draw gains a strip as tall as the distance to the reference point
    (far, for a metric without a threshold), so the surrogate's uncertainty at a value the
    metric cannot pass outweighed every real improvement: in a bad ZDT3 seed the last 60
    trials went to x0 = 0, 95% of the winner's expected gain from draws of f1 below 0. An end
    that is not a bound stays open: draws past the best accuracy are how larger students get
    tried (a floor everywhere cost `distill` 7% of its median).
    """
    observed = _frontier_points(data)
    ends = front.min(axis=0)
    span = np.ptp(data.objectives[data.tiers != FAILED], axis=0)
    bounded = np.sum(observed - ends <= 1e-6 * span, axis=0) >= 2
    return np.where(bounded, np.minimum(means, ends), -np.inf)


def _frontier_points(data: _History) -> np.ndarray:
    """The objectives the frontier is made of: full results (the full task, run to the end)
    that meet every threshold. A cheaper task's values and a stopped trial's checkpoint are
    never frontier points."""
    return data.objectives[(data.tiers == FEASIBLE) & data.full]


def _near_frontier(space: SearchSpace, data: _History, frontier_ranks: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Candidates made from the best points: small perturbations of one, which refine the
    frontier where TPE's broader proposals only rediscover its neighbourhood; crossovers
    taking each axis from one of two, which carry what one point has learned on some axes
    (training hyperparameters, say) to another's position on the others (its architecture);
    and one point with one axis redrawn over its whole range.

    The redraws follow the front to where none of the best points is yet (ZDT2: the other
    axes found at their optimum near f1 = 0, x0 carried to the far end), which perturbations
    reach only a step at a time. The axis is drawn in proportion to how much the best points
    differ on it: the axes they agree on are the ones already settled (redrawing ZDT3's
    g-axes only spent trials).
    """
    anchors = data.rows[np.argsort(frontier_ranks, kind="stable")[:LOCAL_ANCHORS]]
    picks = anchors[rng.integers(len(anchors), size=LOCAL_DRAWS)]
    moved = picks + rng.normal(0.0, LOCAL_STEP, size=picks.shape) * space.continuous
    flips = (rng.uniform(size=picks.shape) < 1.0 / max(space.n_dims, 1)) & ~space.continuous
    moved = np.where(flips, space.sample_uniform(rng, LOCAL_DRAWS), moved)
    first = anchors[rng.integers(len(anchors), size=CROSSOVER_DRAWS)]
    second = anchors[rng.integers(len(anchors), size=CROSSOVER_DRAWS)]
    crossed = np.where(rng.uniform(size=first.shape) < 0.5, first, second)
    redrawn = anchors[rng.integers(len(anchors), size=REDRAW_DRAWS)]
    spread = anchors.std(axis=0)
    axes = (rng.choice(space.n_dims, size=REDRAW_DRAWS, p=spread / spread.sum()) if spread.sum() > 0
            else rng.integers(space.n_dims, size=REDRAW_DRAWS))
    every = np.arange(REDRAW_DRAWS)
    redrawn[every, axes] = space.sample_uniform(rng, REDRAW_DRAWS)[every, axes]
    return space.snap(np.vstack([moved, crossed, redrawn]), rng)


def _reference_point(data: _History) -> np.ndarray:
    """Where the hypervolume is measured from: each optimized metric's threshold when it has
    one (only the frontier beyond it counts), else a tenth of the range past the worst value
    of any completed observation.

    The worst *completed* value, not the worst feasible one: a reference at the edge of the
    current feasible front gives no credit to anything past it, so once the feasible points
    sit at one end of the front (the small models, say), the other end can never win again.
    Trials stopped early do not count (their checkpoint's values are no result; unless
    nothing else completed); cheaper tasks' do (a reference past their worse values measured
    better on the multitask test's problem than one from the full task's alone).
    """
    completed = data.tiers != FAILED
    ended = completed & (data.fidelities == 1.0)
    pool = data.objectives[ended] if ended.any() else data.objectives[completed]
    worst, best = pool.max(axis=0), pool.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    return np.where(np.isnan(data.thresholds), worst + 0.1 * span, data.thresholds)


def _metric_ranks(data: _History, metric: int) -> np.ndarray:
    """Feasible first: (tier, objective or shortfall) ordered, returned as ranks.

    With tasks and one metric, an objective counts by its quantile among its own task's
    observations: a cheap task is a biased view, so its values compare with each other, not
    with the full task's. (With two metrics the selection step's Gaussian processes, which
    take the task as an input, correct the bias; quantiles there measured worse.) A trial
    stopped early is placed between its task's trials that ran to the end (after those it
    ties), not in a group of its own, where alone it would rank first."""
    objective = data.objectives[:, metric]
    if data.multitask and data.objectives.shape[1] == 1:
        objective = np.full(len(objective), np.nan)
        for cost in np.unique(data.task_costs):
            same = (data.task_costs == cost) & (data.tiers != FAILED)
            ended = same & (data.fidelities == 1.0) if np.any(same & (data.fidelities == 1.0)) else same
            values = np.sort(data.objectives[ended, metric])
            objective[ended] = np.argsort(np.argsort(data.objectives[ended, metric], kind="stable"),
                                          kind="stable") / max(len(values) - 1, 1)
            stopped = same & ~ended
            slots = np.searchsorted(values, data.objectives[stopped, metric], side="right") - 0.5  # after its ties
            objective[stopped] = slots / max(len(values) - 1, 1)
    within = np.where(data.tiers <= OUTSIDE_THRESHOLD, objective, data.shortfall)
    within = np.where(data.tiers == OUTSIDE_THRESHOLD, data.shortfall, within)
    return _ranks(data.tiers, np.nan_to_num(within))


def _frontier_ranks(data: _History) -> np.ndarray:
    """Feasible first, then non-dominated rank of the objectives among the feasible ones: full
    results first, cheaper ones (cheaper tasks, trials stopped early) after every full one,
    so none of them is a frontier point or one the local candidates start from."""
    within = data.shortfall.copy()
    feasible = data.tiers == FEASIBLE
    full, cheap = np.flatnonzero(feasible & data.full), np.flatnonzero(feasible & ~data.full)
    if len(full):
        within[full] = nondominated_ranks(data.objectives[full])
    if len(cheap):
        within[cheap] = nondominated_ranks(data.objectives[cheap]) + (within[full].max() + 1 if len(full) else 0)
    return _ranks(data.tiers, within)


def _ranks(tiers: np.ndarray, within: np.ndarray) -> np.ndarray:
    order = np.lexsort((within, tiers))
    ranks = np.empty(len(order))
    ranks[order] = np.arange(len(order))
    return ranks


def _unseen(space: SearchSpace, candidates: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Drop candidates that repeat a tried or in-flight point (or each other). Candidates are
    snapped, so a repeat is the same row exactly."""
    candidates = np.unique(candidates, axis=0)
    if len(taken) == 0:
        return candidates
    return candidates[~np.isin(_row_keys(candidates), _row_keys(taken))]


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """Each row as one opaque value, so rows can be matched with set operations."""
    rows = np.ascontiguousarray(rows, dtype=float)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


def _log_feasibility(space: SearchSpace, data: _History, candidates: np.ndarray, prior_weight: float,
                     bad: np.ndarray) -> np.ndarray:
    """log P(not `bad` | x), from Parzen densities of the observations in both groups."""
    if not bad.any():
        return np.zeros(len(candidates))
    good_rows, bad_rows = data.rows[~bad], data.rows[bad]
    log_good = build_mixture(space, good_rows, prior_weight).log_pdf(candidates) + math.log(len(good_rows) + prior_weight)
    log_bad = build_mixture(space, bad_rows, prior_weight).log_pdf(candidates) + math.log(len(bad_rows) + prior_weight)
    return log_good - np.logaddexp(log_good, log_bad)

"""The one seam between the platform and the search algorithm (contract: DESIGN.md).

One call: validate, then either a start-up suggestion (the given `default_value`s first, then
space-filling points: a shifted Sobol sequence in a box of doubles, else maximin random draws)
or the model-based step:

1. Rank the history per optimized metric, feasible first (`optimizer.history`): failed and
   infeasible points sit in every model's bad group instead of being dropped.
2. Fit one hyperopt TPE model per optimized metric (optimizer.tpe); with two metrics, one more
   whose good group is the current frontier (non-dominated rank among feasible points); and a
   joint feasibility model (completed-and-feasible against failed-or-violating).
3. Candidates: from every model, hyperopt-style proposals (best l/g of many draws per axis)
   plus plain draws from l, and a few uniform draws for exploration; with two metrics, also
   the best points perturbed, crossed, with one axis redrawn (`_near_frontier`), and moved
   up the trends they show, a discrete axis and its double together (`_along_trends`).
4. The Pareto selection step (two metrics): a Gaussian process per optimized metric predicts
   each candidate's values (a categorical of numbers ordered by value, `optimizer.space`;
   a trend among the best points, a double following a discrete axis, one more input, or
   in place of the double where the evidence says so: `optimizer.trends`);
   the candidate with the largest expected hypervolume improvement over the current feasible
   frontier wins, weighted by its probability of meeting every constraint (a Gaussian
   process per constraint metric) and of giving a full result (a Gaussian process on the
   indicator of each failure kind, and one of stopped trials: `_full_result_probability`);
   posterior draws do not pass an end of the front that is a bound (`_draw_floor`).
   Thresholds on optimized metrics are the hypervolume's reference point, so only the part
   of the frontier beyond them counts; a metric without a threshold is measured from past the
   worst completed value, or the worst a failed trial would plausibly have given
   (`_reference_point`). Every `OPTIMISTIC_PERIOD`-th trial, when no other is in flight, the
   gain is that of each candidate's optimistic point instead (`_optimistic_step`). With one
   metric (no tasks), or when no candidate is expected to improve anything, candidates are
   ranked as in plain TPE: the (frontier) model's log l/g plus twice log P(feasible).
5. Pending points and the batch's earlier picks are liars in every bad group (constant liar)
   and believed at their predicted values by the Gaussian processes (kriging believer); exact
   repeats of tried or in-flight points are never proposed.

SigOpt's definition keys: every candidate is snapped to its grid and conditionals (inactive
parameters marked, see optimizer.space) and dropped if it breaks a linear constraint; priors
shape start-up draws and each axis's Parzen prior; reported `value_stddevs` are per-point
noise in the Gaussian processes. With tasks, the task cost is one more Gaussian-process input,
the frontier is made of full-task observations only, and `optimizer.multitask` says where
each proposal runs; with one metric, the model-based pick is the candidate with the largest
expected improvement at the full task (`full_task_improvement`). A trial stopped early
(`Observation.fidelity` < 1) is a cheaper observation (its cost is its task's times its
fidelity): it ranks in every TPE model by its checkpoint's values, and the Gaussian processes
read them as a noisy view of its full result (noise (1 - fidelity) x the metric's spread, the
per-point noise reported `value_stddevs` use); it never makes the frontier or the
hypervolume's reference, and it is not a failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scipy.special import ndtr
from scipy.stats import qmc

from paretune.optimizer.gp import MAX_TRAINING_POINTS, GaussianProcess, training_subset
from paretune.optimizer.history import (FAILED, VIOLATES_CONSTRAINT, History, frontier_points,
                                        frontier_ranks, metric_ranks, per_column, row_keys, ways_without_full_result)
from paretune.optimizer.multitask import choose_task, full_task_improvement
from paretune.optimizer.observation import Observation, validate_assignments, validate_history
from paretune.optimizer.pareto import hypervolume_improvements, pareto_front
from paretune.optimizer.space import INACTIVE, SearchSpace
from paretune.optimizer.spec import ExperimentSpec
from paretune.optimizer.tpe import build_mixture, fit_model

FEASIBILITY_WEIGHT = 2.0  # a failed trial wastes its whole cost: weigh P(feasible) above one TPE ratio
EXPLORATION_DRAWS = 32  # uniform candidates beside TPE's, so the surrogate can pick unexplored regions
LOCAL_STEP = 0.05  # spread of the local candidates around the best points, on the unit axes
LOCAL_ANCHORS = 10  # how many of the best points (by frontier rank) local candidates start from
LOCAL_DRAWS = 96  # perturbations of the best points per call
CROSSOVER_DRAWS = 48  # crossovers of two of the best points per call
REDRAW_DRAWS = 16  # best points with one axis redrawn over its whole range, per call
TREND_LEVELS = (1, 2)  # levels a best point moves up a trend's axis, its double with it (`_along_trends`)
SOBOL_LOOKAHEAD = 8  # Sobol points past its position a box's start-up may take
POSTERIOR_SPREAD = 0.5  # posterior draws at half their spread: full spread over-rewards the boundary, where the surrogate is least sure
HYPERVOLUME_SAMPLES = 64  # posterior draws per candidate for the expected hypervolume improvement
OPTIMISTIC_PERIOD = 5  # every this many trials (tried or in flight), one optimistic step (`_optimistic_step`)
OPTIMISM = 2.0  # the optimistic point: this many posterior standard deviations better than the mean
PLAUSIBLE_SPREAD = 2.0  # deviations to the bad side: what a failed trial would plausibly have given


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
    issued: int | None = None,
) -> list[Proposal]:
    """Return `n` new proposals. Pure: same inputs and seed, same output.

    `n_startup` random suggestions come first (default scales with the number of tunable
    parameters); `n_candidates` are drawn per model; `gamma` sets hyperopt's good-group size
    (ceil(gamma * sqrt(n)), at most 25). Every proposal satisfies the linear constraints and
    grids, and carries only the parameters its conditionals make active.

    `issued` counts the suggestions made before this call, lost ones included (expired with a
    killed process, deleted through the API); a box's start-up continues its Sobol sequence from
    there, so a lost suggestion's point is not issued again (which would repeat it each time a
    trial at that point kills its process). Default: the history and pending count.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    columns = validate_history(spec, history)
    pending = [validate_assignments(spec, assignments) for assignments in pending]
    rng = np.random.default_rng(seed)
    space = SearchSpace(spec)
    startup = n_startup if n_startup is not None else min(max(space.n_dims + 4, 8), 20)
    data = History.build(spec, space, history, columns)
    in_flight = space.encode_many(pending)
    spent = [spec.task_cost(o.task) * o.fidelity for o in history] if spec.tasks else []  # only tasks need it
    position = issued if issued is not None else len(data.rows) + len(in_flight)
    batch: list[Proposal] = []
    for offset in range(n):
        taken = np.vstack([data.rows, in_flight])
        if space.n_dims == 0:
            row = np.zeros(0)
        elif len(space.default_axes) and len(taken) < startup and not _defaults_tried(space, taken):
            row = _with_defaults(space, taken, rng)
        elif len(taken) < startup or data.n_completed == 0:
            row = _space_filling(space, taken, rng, position + offset)
        else:
            row = _model_based(space, data, in_flight, taken, rng, n_proposals, n_candidates, gamma, prior_weight)
        task = choose_task(spec, data, row, spent, len(taken) < startup)
        spent.append(spec.task_cost(task))
        in_flight = np.vstack([in_flight, row[None, :]])
        batch.append(Proposal(space.decode(row), task))
    return batch


# -- start-up ------------------------------------------------------------------------------------

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


def _space_filling(space: SearchSpace, taken: np.ndarray, rng: np.random.Generator, position: int | None = None,
                   draws: int = 64) -> np.ndarray:
    """The next start-up point. In a box of uniform doubles, the Sobol sequence's point at
    `position` (default: the count taken) shifted onto the first trial, so the start-up covers
    the box evenly; anywhere else the random draw farthest from everything tried or in flight
    (maximin over `draws`), which reaches the extremes of discrete axes (the widest, deepest
    students) early.

    Measured (benchmarks/RESULTS.md, "The optimizer, twelfth round"): maximin's points lean to
    the corners, which wastes a continuous box's start-up (DTLZ2), while in mixed spaces the
    uniform design lowered the interaction problems' worst seeds."""
    candidates = space.sample(rng, draws)
    if len(taken) == 0:
        return candidates[0]
    if space.uniform_box:
        points = _shifted_sobol(taken[0], len(taken) if position is None else position, SOBOL_LOOKAHEAD)
        points = points[space.feasible(points)]
        apart = space.distances(points, taken).min(axis=1) > 1e-9  # encoding round trips move a double by an ulp
        if apart.any():
            return points[int(np.argmax(apart))]
    return candidates[int(np.argmax(space.distances(candidates, taken).min(axis=1)))]


def _shifted_sobol(first: np.ndarray, start: int, count: int) -> np.ndarray:
    """Points `start` to `start + count - 1` of the unscrambled Sobol sequence, shifted modulo 1
    so that point 0 is `first`: a function of the history alone, so resumed and parallel
    start-ups agree. (A suggestion abandoned while others were pending can leave the next
    point taken: hence more than one.)"""
    sequence = qmc.Sobol(len(first), scramble=False)
    sequence.fast_forward(start)
    return np.mod(sequence.random(count) + first, 1.0)


# -- the model-based step ------------------------------------------------------------------------

def _model_based(space: SearchSpace, data: History, in_flight: np.ndarray, taken: np.ndarray,
                 rng: np.random.Generator, n_proposals: int, n_candidates: int, gamma: float,
                 prior_weight: float) -> np.ndarray:
    """The model-based step (the module docstring's 1-5); `taken` is every tried or in-flight row."""
    n_metrics = data.objectives.shape[1]
    models = [fit_model(space, data.rows, metric_ranks(data, m), in_flight, gamma, prior_weight)
              for m in range(n_metrics)]
    proposers = list(models)
    by_front = frontier_ranks(data)
    data = data.with_best_point_trends(by_front)
    if n_metrics > 1:
        proposers.append(fit_model(space, data.rows, by_front, in_flight, gamma, prior_weight))
    candidates = space.snap(np.vstack([np.vstack([model.propose(rng, n_proposals, n_candidates),
                                                  model.sample(rng, n_proposals * 4)]) for model in proposers]
                                      + [space.sample_uniform(rng, EXPLORATION_DRAWS)]), rng)
    candidates = _unseen(space, candidates[space.feasible(candidates)], taken)
    if len(candidates) == 0:
        return _space_filling(space, taken, rng)
    if n_metrics > 1 and data.n_completed >= 2:
        local = _near_frontier(space, data, by_front, rng)
        local = _unseen(space, local[space.feasible(local)], taken)
        candidates = np.vstack([candidates, local])
        gains = _expected_hypervolume_gain(space, data, by_front, in_flight, candidates, rng, prior_weight,
                                           _optimistic_step(len(taken), len(in_flight)))
        if np.max(gains) > 0:
            return candidates[int(np.argmax(gains))]
    feasibility = _log_feasibility(space, data, candidates, prior_weight, data.tiers >= VIOLATES_CONSTRAINT)
    if n_metrics == 1 and data.multitask and _two_tasks_seen(data):
        return candidates[int(np.argmax(full_task_improvement(data, candidates) * np.exp(feasibility)))]
    scores = proposers[-1].acquisition(candidates) + FEASIBILITY_WEIGHT * feasibility
    return candidates[int(np.argmax(scores))]


def _two_tasks_seen(data: History) -> bool:
    """A full result to improve on, and trials at more than one task: the multitask Gaussian
    process then has something to carry from the cheap task to the full one."""
    return bool(np.any(data.full & (data.tiers != FAILED))) and len(np.unique(data.task_costs)) > 1


def _optimistic_step(n_taken: int, n_in_flight: int) -> bool:
    """Whether this trial's pick goes by each candidate's optimistic point (its posterior mean
    `OPTIMISM` standard deviations better on every metric) rather than by draws at half spread:
    every `OPTIMISTIC_PERIOD`-th trial, when no other trial is in flight.

    The Gaussian processes can condemn a region they have only seen at poor settings of the
    other axes, and draws at half spread then never gain there. In DTLZ2, once the best points
    sat at the front's two corners with the distance axes at their optimum, a best corner with
    its position moved to the middle read (1.12, 1.15) where it is (0.72, 0.72): the last 40
    trials went to the corners, in 7 seeds of 40 (`pipeline` lost most of its front in 3 seeds
    of 10 before, none after). One trial in `OPTIMISTIC_PERIOD` tests the most promising of those doubts. With trials in
    flight it is not taken: with 8 in flight it cost DTLZ2 15% of its median (0.715 against
    0.836, 10 seeds), where the tails were within the goal without it.
    """
    return n_in_flight == 0 and n_taken % OPTIMISTIC_PERIOD == 0


def _expected_hypervolume_gain(space: SearchSpace, data: History, by_front: np.ndarray, in_flight: np.ndarray,
                               candidates: np.ndarray, rng: np.random.Generator, prior_weight: float,
                               optimistic: bool = False) -> np.ndarray:
    """E[hypervolume improvement] x P(meets constraints) x P(a full result), per candidate;
    `optimistic`: the improvement of each candidate's optimistic point (`_optimistic_step`)."""
    completed = np.flatnonzero(data.tiers != FAILED)
    subset = completed[training_subset(by_front[completed])]
    inputs, continuous = data.inputs(data.rows[subset], data.task_costs[subset]), data.input_continuous
    flight, targets = data.inputs(in_flight), data.inputs(candidates)
    n_optimized = data.objectives.shape[1]
    fitted = GaussianProcess.fit_each(inputs, np.column_stack([data.objectives[subset], data.constraint_values[subset]]),
                                      continuous, data.variances[subset], data.input_ordinal, data.input_optional,
                                      data.input_replaceable)
    models = [model.believing(flight) for model in fitted[:n_optimized]]
    predictions = [model.predict(targets) for model in models]
    means = np.column_stack([mean for mean, _ in predictions])
    stds = np.column_stack([std for _, std in predictions])
    believed = np.column_stack([model.predict_mean(flight) for model in models]) if len(in_flight) else means[:0]
    front = pareto_front(np.vstack([frontier_points(data), believed]))
    reference = _reference_point(data, _plausible_where_failed(data, models))
    if optimistic:
        samples = (means - OPTIMISM * stds)[:, None, :]
    else:
        draws = rng.standard_normal((1, HYPERVOLUME_SAMPLES, means.shape[1]))
        samples = means[:, None, :] + POSTERIOR_SPREAD * stds[:, None, :] * draws
    if len(front):
        samples = np.maximum(samples, _draw_floor(data, front, means)[:, None, :])
    gains = hypervolume_improvements(samples.reshape(-1, means.shape[1]), front, reference)
    expected = gains.reshape(samples.shape[:2]).mean(axis=1)
    probability = _full_result_probability(data, flight, targets)
    for limit, model in zip(data.constraint_limits, fitted[n_optimized:]):
        mean, std = model.believing(flight).predict(targets)
        probability *= ndtr((limit - mean) / std)
    return expected * probability


def _full_result_probability(data: History, flight: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """P(a full result) at each candidate: the product, over each way of giving none (each
    failure kind, stopping early: `ways_without_full_result`), of a Gaussian process on that
    way's indicator (1 for an observation that did not end that way, 0 for one that did), its
    mean clipped to [0, 1].

    Its per-axis lengthscales, chosen by evidence, tell the axes that explain failures from
    those that do not. A joint Parzen density ratio cannot: in a bad `deep_lr` seed, an
    out-of-memory candidate (a good large student's settings with the batch raised to 64) read
    as 0.93 feasible, next to a dozen failures at batch 64, because it matched that student on
    dropout, warm-up and alpha, which have nothing to do with memory. One model per kind, because
    causes with different axes blur in one: in a bad `wide_lr` seed, 768-wide students had run
    out of memory at batch 64 and diverged at high learning rates, and one model read a 768-wide
    student at batch 16 and a low learning rate (which never fails) as 0.20 likely to give a
    result; the models per kind read it as 0.99, and the same student at batch 64 as 0.08.
    """
    probability = np.ones(len(targets))
    for ended, told in ways_without_full_result(data):
        observed = np.flatnonzero(told)
        order = np.lexsort((-observed, ~ended[observed]))  # those that ended this way first, then the most recent
        ranks = np.empty(len(observed))
        ranks[order] = np.arange(len(observed))
        subset = observed[training_subset(ranks)]
        model = GaussianProcess.fit(data.inputs(data.rows[subset], data.task_costs[subset]),
                                    (~ended[subset]).astype(float), data.input_continuous,
                                    ordinal=data.input_ordinal, optional=data.input_optional,
                                    replaceable=data.input_replaceable).believing(flight)
        probability *= np.clip(model.predict_mean(targets), 0.0, 1.0)
    return probability


def _draw_floor(data: History, front: np.ndarray, means: np.ndarray) -> np.ndarray:
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
    observed = frontier_points(data)
    ends = front.min(axis=0)
    span = per_column(np.ptp, data.objectives.compress(data.tiers != FAILED, axis=0))
    bounded = per_column(np.count_nonzero, observed - ends <= 1e-6 * span) >= 2
    return np.where(bounded, np.minimum(means, ends), -np.inf)


def _near_frontier(space: SearchSpace, data: History, by_front: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Candidates made from the best points: small perturbations of one, which refine the
    frontier where TPE's broader proposals only rediscover its neighbourhood; crossovers
    taking each axis from one of two, which carry what one point has learned on some axes
    (training hyperparameters, say) to another's position on the others (its architecture);
    one point with one axis redrawn over its whole range; and the best points moved up the
    trends they show (`_along_trends`).

    The redraws follow the front to where none of the best points is yet (ZDT2: the other
    axes found at their optimum near f1 = 0, x0 carried to the far end), which perturbations
    reach only a step at a time. The axis is drawn in proportion to how much the best points
    differ on it: the axes they agree on are the ones already settled (redrawing ZDT3's
    g-axes only spent trials).
    """
    anchors = data.rows[np.argsort(by_front, kind="stable")[:LOCAL_ANCHORS]]
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
    near = space.snap(np.vstack([moved, crossed, redrawn]), rng)
    ridge = _along_trends(space, data, anchors)
    return np.vstack([near, space.snap(ridge, rng)]) if len(ridge) else near


def _along_trends(space: SearchSpace, data: History, anchors: np.ndarray) -> np.ndarray:
    """The best points moved up each trend the Gaussian processes read (`optimizer.trends`):
    `TREND_LEVELS` levels up its discrete axis, its double moved with it by the trend's slope
    (a student one width up, at the learning rate the best students' trend gives that width).

    No other candidate moves two axes together that way: a perturbation or a redraw moves the
    width alone, at a learning rate that suits the narrower student, and a wide student tried
    there scores badly (in a lost `wide_lr` seed, the 768- and 1024-wide students were tried
    0.4 decades or more off their learning rate, and the best stayed 512 wide).

    Up only (to larger values: wider, deeper students): a level down as well cost `wide_lr` reach
    and `deep_lr` its worst seed. On 200 fresh seeds `wide_lr` reached its accurate end in 155
    (126 without the moves), `deep_lr` in 159 (164), and a few more seeds of each ended below
    0.75 of the best hypervolume (benchmarks/RESULTS.md, "fifteenth round" and "sixteenth round").
    """
    rows = []
    surrogate = space.surrogate_rows(anchors)
    for trend in data.trends:
        usable = (anchors[:, trend.along] != INACTIVE) & (anchors[:, trend.follower] != INACTIVE)
        for levels in TREND_LEVELS:
            moved = space.moved_levels(anchors[usable], trend.along, levels)
            shift = space.surrogate_rows(moved)[:, trend.along] - surrogate[usable, trend.along]
            moved[:, trend.follower] = np.clip(moved[:, trend.follower] + trend.slope * shift, 0.0, 1.0)
            rows.append(moved)
    return np.vstack(rows) if rows else np.empty((0, space.n_dims))


def _reference_point(data: History, plausible: np.ndarray | None = None) -> np.ndarray:
    """Where the hypervolume is measured from: each optimized metric's threshold when it has
    one (only the frontier beyond it counts), else a tenth of the range past the worst value
    of any completed observation or of `plausible` (`_plausible_where_failed`).

    The worst *completed* value, not the worst feasible one: a reference at the edge of the
    current feasible front gives no credit to anything past it, so once the feasible points
    sit at one end of the front (the small models, say), the other end can never win again.
    Trials stopped early do not count (their checkpoint's values are no result; unless
    nothing else completed); cheaper tasks' do (a reference past their worse values measured
    better on the multitask test's problem than one from the full task's alone).

    Failed trials count by what they would plausibly have given, because completed trials
    alone shut out a region whose first trials failed. In a traced `wide_lr` seed
    (benchmarks/problems_interactions.py) the wide students tried first ran out of memory or
    diverged, the size's reference stood at 34-36M parameters for 60 trials (the largest
    completed student had 31-33M), and every wider candidate (the accurate end: 108-182M) sat
    past it and could gain nothing, however accurate its prediction: with the true values in
    place of the Gaussian processes, the accurate end was reached no more often. Counting the
    failed trials, `wide_lr` reached it in 110 of 120 seeds (95 before) and `deep_lr` in
    101 (96) (benchmarks/RESULTS.md, "nineteenth round"). The candidates' plausible values
    would open that region further, but they push the reference far out wherever the model is
    unsure, and the front's ends then outweigh its middle (`zdt3` and `pipeline` lost their
    worst seeds to it).
    """
    completed = data.tiers != FAILED
    ended = completed & (data.fidelities == 1.0)
    pool = data.objectives.compress(ended if ended.any() else completed, axis=0)
    worst, best = per_column(np.max, pool), per_column(np.min, pool)
    if plausible is not None and len(plausible):
        worst = np.maximum(worst, plausible.max(axis=0))
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    return np.where(np.isnan(data.thresholds), worst + 0.1 * span, data.thresholds)


def _plausible_where_failed(data: History, models: list[GaussianProcess]) -> np.ndarray:
    """Each optimized metric's posterior mean `PLAUSIBLE_SPREAD` standard deviations to its bad
    side, at the failed trials (the latest `MAX_TRAINING_POINTS`), where nothing was measured:
    how far the reference must reach to cover the region they tried (`_reference_point`)."""
    failed = np.flatnonzero(data.tiers == FAILED)[-MAX_TRAINING_POINTS:]
    if len(failed) == 0:
        return np.empty((0, len(models)))
    rows = data.inputs(data.rows[failed])
    return np.column_stack([mean + PLAUSIBLE_SPREAD * std for mean, std in (model.predict(rows) for model in models)])


def _unseen(space: SearchSpace, candidates: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """Drop candidates that repeat a tried or in-flight point (or each other). Candidates are
    snapped, so a repeat is the same row exactly."""
    candidates = np.unique(candidates, axis=0)
    if len(taken) == 0 or len(candidates) == 0:
        return candidates
    # a weighted sum of each row first (fast: each tried row's looked up among the candidates'
    # sorted sums), rows compared whole only where it matches
    weights = np.sqrt(np.arange(2.0, 2.0 + candidates.shape[1]))
    sums, taken_sums = np.sort(candidates @ weights), taken @ weights
    taken = taken[sums[np.minimum(np.searchsorted(sums, taken_sums), len(sums) - 1)] == taken_sums]
    return candidates[~np.isin(row_keys(candidates), row_keys(taken))]


def _log_feasibility(space: SearchSpace, data: History, candidates: np.ndarray, prior_weight: float,
                     bad: np.ndarray) -> np.ndarray:
    """log P(not `bad` | x), from Parzen densities of the observations in both groups."""
    if not bad.any():
        return np.zeros(len(candidates))
    good_rows, bad_rows = data.rows[~bad], data.rows[bad]
    log_good = build_mixture(space, good_rows, prior_weight).log_pdf(candidates) + math.log(len(good_rows) + prior_weight)
    log_bad = build_mixture(space, bad_rows, prior_weight).log_pdf(candidates) + math.log(len(bad_rows) + prior_weight)
    return log_good - np.logaddexp(log_good, log_bad)

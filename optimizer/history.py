"""The history as the search reads it: encoded rows, a feasibility tier per observation,
objectives in minimization form, and the orders every model ranks it by.

Tiers, best first: completed observations that meet every threshold (FEASIBLE), those outside
an optimized metric's threshold (not in the region of interest), constraint violators by how
far they miss, then failures. Failed and infeasible points thus sit in every model's bad group
instead of being dropped. A trial stopped early (`Observation.fidelity` < 1) and a cheaper
task's observation are no full result: they rank after every full one in the frontier order,
never make the frontier, and are not failures. Each failure keeps its kind (`paretune.failures`:
out of memory, diverged, ...), so the model of full results can learn each cause on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import compress, count
from operator import attrgetter, itemgetter
from typing import Any, Callable

import numpy as np

from paretune.failures import Failure
from paretune.optimizer.gp import MAX_TRAINING_POINTS
from paretune.optimizer.observation import Observation
from paretune.optimizer.pareto import leading_fronts
from paretune.optimizer.space import SearchSpace
from paretune.optimizer.spec import ExperimentSpec
from paretune.optimizer.trends import MIN_FEASIBLE, TREND_ANCHORS, Trend, best_point_trends, residuals

FAILED, VIOLATES_CONSTRAINT, OUTSIDE_THRESHOLD, FEASIBLE = 3, 2, 1, 0


@dataclass(frozen=True)
class History:
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
    failure_kinds: np.ndarray  # why each failed observation failed (a `FailureKind` value); "" where it did not
    multitask: bool  # the experiment has tasks: the Gaussian processes take the task cost as an input
    space: SearchSpace  # how the Gaussian processes read a row (`SearchSpace.surrogate_rows`)
    trends: tuple[Trend, ...] = ()  # the best points' trends, inputs of the Gaussian processes (`with_best_point_trends`)

    @property
    def n_completed(self) -> int:
        return int(np.sum(self.tiers != FAILED))

    @property
    def full(self) -> np.ndarray:
        """The full results: the full task, run to the end. Only these make the frontier."""
        return (self.task_costs == 1.0) & (self.fidelities == 1.0)

    def inputs(self, rows: np.ndarray, task_costs: np.ndarray | float = 1.0) -> np.ndarray:
        """What the Gaussian processes see: the rows (ordinal categoricals at their places), plus
        the task cost as one more axis when the experiment has tasks (so cheap observations
        inform predictions at the full task), plus each trend's residual (`optimizer.trends`)."""
        surrogate = self.space.surrogate_rows(rows)
        columns = [surrogate]
        if self.multitask:
            columns.append(np.broadcast_to(np.asarray(task_costs, dtype=float), (len(rows),))[:, None])
        if self.trends:
            columns.append(residuals(self.trends, rows, surrogate))
        return np.column_stack(columns) if len(columns) > 1 else surrogate

    @property
    def input_continuous(self) -> np.ndarray:
        """Which of `inputs`' axes are continuous (the rest are categorical to the kernels)."""
        return np.concatenate([self.space.continuous, [True] * self.multitask, [True] * len(self.trends)]).astype(bool)

    @property
    def input_ordinal(self) -> np.ndarray:
        """Which of `inputs`' categorical axes are ordinal (measured by their places)."""
        return np.concatenate([self.space.ordinal, [False] * (self.multitask + len(self.trends))]).astype(bool)

    @property
    def input_optional(self) -> np.ndarray:
        """Which of `inputs`' axes a Gaussian process may leave out by evidence: the trends'
        residuals (`GaussianProcess.fit`)."""
        return np.concatenate([np.zeros(self.space.n_dims + self.multitask, dtype=bool),
                               np.ones(len(self.trends), dtype=bool)])

    @property
    def input_replaceable(self) -> np.ndarray:
        """Which of `inputs`' axes a Gaussian process may read through a trend's residual alone:
        the trends' followers (`GaussianProcess.fit`)."""
        followers = np.zeros(len(self.input_optional), dtype=bool)
        followers[[trend.follower for trend in self.trends]] = True
        return followers

    def with_best_point_trends(self, by_front: np.ndarray) -> History:
        """This history with the trends its best points (by `by_front`, `frontier_ranks`) show
        as inputs of the Gaussian processes (`optimizer.trends`)."""
        if np.count_nonzero(self.tiers == FEASIBLE) < MIN_FEASIBLE:
            return self
        anchors = self.rows[np.argsort(by_front, kind="stable")[:TREND_ANCHORS]]
        return replace(self, trends=best_point_trends(self.space, anchors))

    @classmethod
    def build(cls, spec: ExperimentSpec, space: SearchSpace, history: list[Observation],
              columns: dict[str, list[Any] | np.ndarray] | None = None) -> History:
        optimized, constraints = spec.optimized_metrics, spec.constraint_metrics
        required = (*optimized, *constraints)
        completed = ~np.fromiter(map(attrgetter("failed"), history), dtype=bool, count=len(history))
        table = np.full((len(history), len(required)), np.nan)  # every required metric, as reported
        if completed.any():  # a column per metric: no container per observation (see observation._conforms)
            reported = list(compress(map(attrgetter("values"), history), completed))
            for column, metric in enumerate(required):
                table[completed, column] = np.fromiter(map(itemgetter(metric.name), reported), dtype=float,
                                                       count=len(reported))
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
        for i in compress(count(), map(attrgetter("value_stddevs"), history)):
            stddevs = history[i].value_stddevs or {}
            variances[i] = [stddevs.get(m.name, 0.0) ** 2 for m in required]
        fidelities = np.fromiter(map(attrgetter("fidelity"), history), dtype=float, count=len(history))
        variances += ((1.0 - fidelities)[:, None] * np.array(spreads)[None, :]) ** 2
        task_costs = np.array([spec.task_cost(o.task) for o in history]) if spec.tasks else np.ones(len(history))
        rows = space.encode_many(list(map(attrgetter("assignments"), history)), columns)
        return cls(rows, tiers, signed[:, :len(optimized)], shortfall, thresholds, signed[:, len(optimized):],
                   constraint_limits, variances, task_costs, fidelities, _failure_kinds(history, ~completed),
                   bool(spec.tasks), space)


def _failure_kinds(history: list[Observation], failed: np.ndarray) -> np.ndarray:
    """Each failed observation's kind, read from its reason the one way every front end writes
    it (`Failure.from_reason`: free text and no reason are "failed"); "" for the others. A
    reason's detail ("out_of_memory: 3 GiB") never splits a kind."""
    kinds = np.full(len(history), "", dtype=object)
    by_reason: dict[str | None, str] = {}
    for i in np.flatnonzero(failed):
        reason = history[i].failure_reason
        if reason not in by_reason:
            by_reason[reason] = Failure.from_reason(reason).kind.value
        kinds[i] = by_reason[reason]
    return kinds


def ways_without_full_result(data: History) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each way an observation gave no full result, as (the observations that ended that way,
    the observations that tell about it): one per failure kind (told by its failures and every
    observation that did not fail), and stopping early (told by every observation that did not
    fail). Only a full result can extend the frontier, so a candidate's expected gain is
    weighted by the probability of one (a stopped trial's values still inform every model; it
    is no failure).

    A failure of another kind says nothing about this one: a configuration that ran out of
    memory never trained, so whether its learning rate diverges is unknown.
    """
    failed = data.tiers == FAILED
    ways = [(failed & (data.failure_kinds == kind), ~failed | (data.failure_kinds == kind))
            for kind in np.unique(data.failure_kinds[failed])]
    stopped = data.fidelities < 1.0
    if stopped.any():
        ways.append((stopped, ~failed))
    return ways


def frontier_points(data: History) -> np.ndarray:
    """The objectives the frontier is made of: full results (the full task, run to the end)
    that meet every threshold. A cheaper task's values and a stopped trial's checkpoint are
    never frontier points."""
    return data.objectives.compress((data.tiers == FEASIBLE) & data.full, axis=0)


def per_column(reduction: Callable[[np.ndarray], Any], points: np.ndarray) -> np.ndarray:
    """`reduction(points, axis=0)`, one column at a time: on a long, narrow array (the objectives
    at 10^5 observations) reducing down the rows is tens of times slower. For reductions
    whose result does not depend on the order of the elements (max, min, counts)."""
    return np.array([reduction(column) for column in points.T])


def metric_ranks(data: History, metric: int) -> np.ndarray:
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


def frontier_ranks(data: History) -> np.ndarray:
    """Feasible first, then non-dominated rank of the objectives among the feasible ones: full
    results first, cheaper ones (cheaper tasks, trials stopped early) after every full one,
    so none of them is a frontier point or one the local candidates start from.

    Only the head of this order is read (the good group, the Gaussian processes' best
    training points, the local candidates' anchors: at most `MAX_TRAINING_POINTS`), so past
    the fronts that hold that many, points share one rank (`leading_fronts`)."""
    within = data.shortfall.copy()
    feasible = data.tiers == FEASIBLE
    full, cheap = np.flatnonzero(feasible & data.full), np.flatnonzero(feasible & ~data.full)
    if len(full):
        within[full] = leading_fronts(data.objectives[full], MAX_TRAINING_POINTS)
    if len(cheap):
        within[cheap] = (leading_fronts(data.objectives[cheap], MAX_TRAINING_POINTS)
                         + (within[full].max() + 1 if len(full) else 0))
    return _ranks(data.tiers, within)


def _ranks(tiers: np.ndarray, within: np.ndarray) -> np.ndarray:
    order = np.lexsort((within, tiers))
    ranks = np.empty(len(order))
    ranks[order] = np.arange(len(order))
    return ranks


def row_keys(rows: np.ndarray) -> np.ndarray:
    """Each row as one opaque value, so rows can be matched with set operations."""
    rows = np.ascontiguousarray(rows, dtype=float)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()

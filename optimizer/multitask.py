"""Cheaper tasks (SigOpt's multitask): which task each proposal runs at.

A Gaussian process with the task cost as one more input lets cheap observations inform
predictions at the full task; the frontier and "best" are made of full-task observations alone.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from paretune.optimizer.gp import GaussianProcess, training_subset
from paretune.optimizer.history import FAILED, History, frontier_ranks, row_keys
from paretune.optimizer.space import SearchSpace
from paretune.optimizer.spec import ExperimentSpec

FULL_TASK_SHARE = 0.5  # the least share of the cost spent that goes to full-task observations
SCREEN_SHARE = 1 / 3  # the share of cheap-task observations (the best) that may be promoted to the full task


def choose_task(spec: ExperimentSpec, space: SearchSpace, data: History, row: np.ndarray, spent: list[float],
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
    model = _task_model(space, data)
    at_full = data.inputs(row[None, :])
    value = [model.variance_reduction(at_full, data.inputs(row[None, :], task.cost)) / task.cost for task in tasks]
    return tasks[int(np.argmax(value))].name


def promote(space: SearchSpace, data: History, in_flight: np.ndarray, row: np.ndarray) -> np.ndarray:
    """The row to run at the full task, with one optimized metric: `row` (the model-based
    pick) or a configuration screened on a cheaper task and not yet run at the full one,
    whichever has the larger expected improvement at the full task (the multitask Gaussian
    process, which reads every task's observations, predicts it there).

    Cheap trials screen, the full task confirms the best of them: without this the full-task
    trials were fresh model-based points, each a new gamble, and the cheap observations only
    shaped the model.
    """
    completed = data.tiers != FAILED
    cheap = completed & (data.task_costs < 1.0)
    if not cheap.any() or not data.full[completed].any():
        return row
    screened = data.rows[cheap & (data.objectives[:, 0] <= np.quantile(data.objectives[cheap, 0], SCREEN_SHARE))]
    confirmed = np.vstack([data.rows[data.full], in_flight])
    screened = np.unique(screened, axis=0)
    screened = screened[~np.isin(row_keys(screened), row_keys(confirmed))]
    if not len(screened):
        return row
    pool = np.vstack([row[None, :], screened])
    return pool[int(np.argmax(full_task_improvement(space, data, pool)))]


def full_task_improvement(space: SearchSpace, data: History, rows: np.ndarray) -> np.ndarray:
    """Expected improvement of the first optimized metric at the full task, per row, over the
    best full-task value (the multitask Gaussian process)."""
    completed = data.tiers != FAILED
    mean, std = _task_model(space, data).predict(data.inputs(rows))
    best = float(np.min(data.objectives[completed & data.full, 0]))
    z = (best - mean) / std
    return (best - mean) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)


def _task_model(space: SearchSpace, data: History) -> GaussianProcess:
    """The first optimized metric's Gaussian process over every task (the task cost an input)."""
    completed = np.flatnonzero(data.tiers != FAILED)
    subset = completed[training_subset(frontier_ranks(data)[completed])]
    return GaussianProcess.fit(data.inputs(data.rows[subset], data.task_costs[subset]), data.objectives[subset, 0],
                               data.input_continuous(space), data.variances[subset, 0])

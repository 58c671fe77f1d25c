"""Cheaper tasks with one optimized metric: what the cheap task measured steers the full-task
search. The model-based pick is the candidate with the largest expected improvement at the full
task, from a Gaussian process over every task (the task cost an input), so a cheap task that is
a biased view (here: the full loss plus 0.2) still points at the optimum."""

from __future__ import annotations

import numpy as np

from paretune.optimizer import ExperimentSpec, Observation, propose

SPEC = ExperimentSpec.model_validate({
    "name": "screened",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
                   {"name": "y", "type": "double", "bounds": {"min": 0, "max": 1}},
                   {"name": "z", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "loss", "objective": "minimize"}],
    "tasks": [{"name": "quick", "cost": 0.25}, {"name": "full", "cost": 1.0}],
})
OPTIMUM = np.array([0.3, 0.6, 0.0])


def loss(a: dict[str, float]) -> float:
    return float(np.sum((np.array([a["x"], a["y"], a["z"]]) - OPTIMUM) ** 2))


def points(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    return [dict(zip("xyz", map(float, rng.uniform(size=3)))) for _ in range(n)]


def distance_to_optimum(with_quick: bool, seed: int) -> float:
    """How far four successive model-based suggestions land from the optimum, after 6 full
    trials at random points and (or not) 40 quick ones."""
    rng = np.random.default_rng(seed)
    full = [Observation(assignments=a, values={"loss": loss(a)}, task="full") for a in points(rng, 6)]
    quick = [Observation(assignments=a, values={"loss": loss(a) + 0.2}, task="quick") for a in points(rng, 40)]
    history = full + (quick if with_quick else [])
    proposals = propose(SPEC, history, [], 4, seed=seed, n_startup=6)
    rows = np.array([[p.assignments[k] for k in "xyz"] for p in proposals])
    return float(np.median(np.linalg.norm(rows - OPTIMUM, axis=1)))


def test_the_cheap_task_steers_the_full_task_search_to_the_optimum():
    informed = [distance_to_optimum(True, seed) for seed in range(4)]
    blind = [distance_to_optimum(False, seed) for seed in range(4)]
    assert np.median(informed) < 0.2
    assert np.median(informed) < 0.5 * np.median(blind)

"""Cheaper tasks with one optimized metric: the cheap task screens, the full task confirms.

A full-task suggestion is the model-based pick or one of the best third of the configurations
already run at a cheaper task (and not yet at the full one), whichever has the larger expected
improvement at the full task; a configuration the cheap task ranked poorly is never promoted.
"""

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


OPTIMUM = {"x": 0.3, "y": 0.6, "z": 0.0}


def loss(a: dict[str, float]) -> float:
    return (a["x"] - 0.3) ** 2 + (a["y"] - 0.6) ** 2 + 0.1 * a["z"]


def history(seed: int) -> tuple[list[Observation], list[dict[str, float]]]:
    """24 quick trials (a biased view: the loss plus 0.2), one of them at the optimum, and 6 full
    ones at random points: the full task has spent half the cost, so the next suggestion runs
    at the full task."""
    rng = np.random.default_rng(seed)
    quick = [dict(zip("xyz", map(float, rng.uniform(size=3)))) for _ in range(23)] + [OPTIMUM]
    full = [dict(zip("xyz", map(float, rng.uniform(size=3)))) for _ in range(6)]
    observations = [Observation(assignments=a, values={"loss": loss(a) + 0.2}, task="quick") for a in quick]
    observations += [Observation(assignments=a, values={"loss": loss(a)}, task="full") for a in full]
    return observations, sorted(quick, key=loss)


def test_a_full_task_suggestion_promotes_one_of_the_best_screened_configurations():
    promoted = 0
    for seed in range(6):
        observations, screened = history(seed)
        [proposal] = propose(SPEC, observations, [], 1, seed=seed)
        assert proposal.task == "full"
        assert proposal.assignments not in screened[8:]  # never one the cheap task ranked in its worst two thirds
        promoted += proposal.assignments == OPTIMUM
    assert promoted >= 5  # the screened optimum is confirmed rather than a fresh model-based point


def test_a_configuration_already_confirmed_at_the_full_task_is_not_promoted_again():
    observations, screened = history(0)
    confirmed = [Observation(assignments=a, values={"loss": loss(a)}, task="full") for a in screened[:8]]
    quick_more = [Observation(assignments=a, values={"loss": loss(a) + 0.2}, task="quick") for a in screened[8:] * 4]
    [proposal] = propose(SPEC, observations + confirmed + quick_more, [], 1, seed=0)
    assert proposal.task == "full"
    assert proposal.assignments not in screened  # every best one is confirmed, the rest ranked poorly

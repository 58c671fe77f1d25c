"""The search covers the whole front: no collapse onto one categorical value, one end or the corners."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paretune.optimizer import ExperimentSpec, Observation, suggest
from paretune.optimizer.pareto import nondominated_ranks

# Three model families, each owning a third of the front: small ones are cheap and inaccurate,
# large ones accurate and costly. Within a family, `scale` trades cost for error along the
# front's segment, and the training knobs `lr` and `decay` only add error away from their optimum.
FAMILIES = {"small": (0.0, 1.0), "medium": (0.4, 0.62), "large": (0.8, 0.25)}

SPEC = ExperimentSpec.model_validate({
    "name": "families",
    "parameters": [
        {"name": "family", "type": "categorical", "categorical_values": list(FAMILIES)},
        {"name": "scale", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        {"name": "lr", "type": "double", "bounds": {"min": 1e-5, "max": 1e-1}, "transformation": "log"},
        {"name": "decay", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 6}},
    ],
    "metrics": [
        {"name": "error", "objective": "minimize", "threshold": 1.2},
        {"name": "cost", "objective": "minimize"},
    ],
})


def evaluate(a: dict) -> dict[str, float] | None:
    base_cost, base_error = FAMILIES[a["family"]]
    if a["family"] == "large" and a["layers"] == 6:
        return None  # out of memory
    training = (np.log10(a["lr"]) + 3.0) ** 2 / 4.0 + (a["decay"] - 0.3) ** 2
    cost = base_cost + 0.35 * a["scale"] + 0.01 * a["layers"]
    error = base_error - 0.3 * np.sqrt(a["scale"]) + 0.5 * training + 0.02 * abs(a["layers"] - 3)
    return {"error": float(error), "cost": float(cost)}


@pytest.mark.slow
def test_the_frontier_holds_every_family_after_100_trials():
    for seed in range(5):
        history: list[Observation] = []
        for step in range(100):
            [assignments] = suggest(SPEC, history, [], 1, seed=seed * 1000 + step)
            values = evaluate(assignments)
            history.append(Observation(assignments=assignments, values=values, failed=values is None))
        completed = [o for o in history if not o.failed and o.values["error"] <= 1.2]
        points = np.array([[o.values["error"], o.values["cost"]] for o in completed])
        front = [o.assignments["family"] for o, rank in zip(completed, nondominated_ranks(points)) if rank == 0]
        assert set(front) == set(FAMILIES), f"seed {seed}: the frontier holds only {sorted(set(front))}"


def continuous_problem(name: str) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": name,
        "parameters": [{"name": f"x{i}", "type": "double", "bounds": {"min": 0.0, "max": 1.0}} for i in range(6)],
        "metrics": [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize"}],
    })


def zdt2(x: np.ndarray) -> tuple[float, float]:
    g = 1.0 + 9.0 * float(np.mean(x[1:]))
    return float(x[0]), g * (1.0 - (x[0] / g) ** 2)


def dtlz2(x: np.ndarray) -> tuple[float, float]:
    radius = 1.0 + float(np.sum((x[1:] - 0.5) ** 2))
    return radius * math.cos(x[0] * math.pi / 2), radius * math.sin(x[0] * math.pi / 2)


def front_after(name: str, function, budget: int, seed: int) -> np.ndarray:
    spec, history = continuous_problem(name), []
    for step in range(budget):
        [assignments] = suggest(spec, history, [], 1, seed=seed * 1000 + step)
        f1, f2 = function(np.array([assignments[f"x{i}"] for i in range(6)]))
        history.append(Observation(assignments=assignments, values={"f1": f1, "f2": f2}))
    points = np.array([[o.values["f1"], o.values["f2"]] for o in history])
    return points[nondominated_ranks(points) == 0]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 8))
def test_a_concave_front_is_followed_to_its_far_end(seed):
    """ZDT2: once the other axes sit at their optimum near f1 = 0, the front must be carried
    along x0 to its far end, not only refined where it was found (before the one-axis
    redraws, seeds 3, 4, 6 and 7 stopped at f1 = 0.38-0.44)."""
    front = front_after("zdt2", zdt2, 80, seed)
    close = front[front[:, 1] <= 1.0 - front[:, 0] ** 2 + 0.1]
    assert close[:, 0].max() >= 0.6, f"seed {seed}: the front stops at f1 = {close[:, 0].max():.2f}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 4, 5, 7, 11, 34])
def test_the_middle_of_a_round_front_is_found_not_only_its_corners(seed):
    """DTLZ2: the corners (x0 = 0 or 1) are easy; the posterior's uncertainty past them must
    not keep the search there. Seeds 7 and 11 found only the corners before the floor on draws
    past a bound. Of seeds 0-31, 6 ended here without the middle before the optimistic steps
    and 3 after (0, 4 and 5), within these 80 trials; of seeds 0-39, 4 with the maximin
    start-up (0, 4, 5 and 34) and 1 with the Sobol start-up (14, not pinned here)."""
    front = front_after("dtlz2", dtlz2, 80, seed)
    close = front[np.hypot(front[:, 0], front[:, 1]) <= 1.1]
    angles = np.degrees(np.arctan2(close[:, 1], close[:, 0]))
    assert np.any((angles > 30) & (angles < 60)), f"seed {seed}: close to the front only at {np.round(angles)}"

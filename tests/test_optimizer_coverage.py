"""The search covers the whole front on a mixed space: no collapse onto one categorical value."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import ExperimentSpec, Observation, suggest
from optimizer.pareto import nondominated_ranks

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

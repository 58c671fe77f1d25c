"""What a benchmark problem is (`Problem`) and how its quality is judged (`hypervolume_2d`).

Every problem is an experiment spec (SigOpt's shape, as users write it) plus an `evaluate`
that returns the metric values a trial would report, or None when the trial fails. Quality is
the hypervolume of the observed points that meet every threshold, as a fraction of the true
front's hypervolume (same reference point), computed on noise-free values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pymoo.indicators.hv import HV

Assignments = dict[str, Any]
_TRUE_HYPERVOLUMES: dict[str, float] = {}


@dataclass(frozen=True)
class Problem:
    """A benchmark: its spec, what a trial reports (`evaluate`, noisy, given the task it ran at
    for multitask problems) and the noise-free truth at the full task (`true_values`).

    Quality is the hypervolume of the feasible full-task points (in the optimized metrics'
    minimization space; with one metric, how far the best value got past the reference)
    as a fraction of the true front's. `budget_units`, when set, is the budget in cost units
    that replaces the harness's number of trials (multitask: SigOpt counts budget in cost).
    """

    name: str
    spec: dict[str, Any]
    evaluate: Callable[..., dict[str, float] | None]  # (assignments, rng[, task]) -> values or None (failed)
    true_values: Callable[[Assignments], dict[str, float] | None]
    reference_point: tuple[float, ...]  # in minimization space of the optimized metrics
    reference_front: Callable[[], np.ndarray] = field(repr=False)
    budget_units: float | None = None
    # why a failed trial failed, as the platform records it (`paretune.failures`: "out_of_memory",
    # "diverged"); None: every failure is reported without a reason
    failure_reason: Callable[[Assignments], str] | None = None

    def observe(self, assignments: Assignments, rng: np.random.Generator, task: str | None) -> dict[str, float] | None:
        if self.spec.get("tasks"):
            return self.evaluate(assignments, rng, task)
        return self.evaluate(assignments, rng)

    def task_cost(self, task: str | None) -> float:
        return next((t["cost"] for t in self.spec.get("tasks", ()) if t["name"] == task), 1.0)

    def true_hypervolume(self) -> float:
        """The true front's hypervolume (computed once per problem: the fronts are enumerated)."""
        if self.name not in _TRUE_HYPERVOLUMES:
            _TRUE_HYPERVOLUMES[self.name] = hypervolume_2d(self.reference_front(), self.reference_point)
        return _TRUE_HYPERVOLUMES[self.name]

    def satisfies_constraints(self, assignments: Assignments) -> bool:
        """Meets every linear constraint of the spec (points that do not never count)."""
        for constraint in self.spec.get("linear_constraints", ()):
            total = sum(term["weight"] * assignments[term["name"]] for term in constraint["terms"])
            if (total < constraint["threshold"] - 1e-9) if constraint["type"] == "greater_than" else \
                    (total > constraint["threshold"] + 1e-9):
                return False
        return True

    @property
    def optimized(self) -> list[dict[str, Any]]:
        return [m for m in self.spec["metrics"] if m.get("strategy", "optimize") == "optimize"]

    def to_minimization(self, values: dict[str, float]) -> tuple[float, float]:
        return tuple(values[m["name"]] * (-1.0 if m.get("objective") == "maximize" else 1.0)
                     for m in self.optimized)

    def feasible(self, values: dict[str, float]) -> bool:
        """Meets every threshold: the points that count for the frontier."""
        for metric in self.spec["metrics"]:
            threshold = metric.get("threshold")
            if threshold is None:
                continue
            value = values[metric["name"]]
            if (value < threshold) if metric.get("objective") == "maximize" else (value > threshold):
                return False
        return True

    def hypervolume_fraction(self, assignments: list[Assignments]) -> float:
        """Quality of the full-task points `assignments` (pass only those)."""
        points = []
        for assignment in assignments:
            values = self.true_values(assignment)
            if values is not None and self.feasible(values) and self.satisfies_constraints(assignment):
                points.append(self.to_minimization(values))
        dimensions = len(self.reference_point)
        return hypervolume_2d(np.array(points).reshape(-1, dimensions), self.reference_point) / self.true_hypervolume()


def hypervolume_2d(points: np.ndarray, reference: tuple[float, ...]) -> float:
    """Hypervolume (minimization) by pymoo's indicator, so the judge is independent of the
    optimizer's own code; with one metric, how far the best point is past the reference."""
    if len(points) == 0:
        return 0.0
    if len(reference) == 1:
        return float(max(reference[0] - np.min(points), 0.0))
    return float(HV(ref_point=np.asarray(reference, dtype=float))(np.asarray(points, dtype=float)))

"""Benchmark problems for the optimizer, by name: four continuous test suites and mixed spaces
shaped like the ones users tune (see `benchmarks/RESULTS.md` for each one's description).

`Problem` (its spec, what a trial reports, the noise-free truth, the true front) and the
hypervolume judge live in `benchmarks.problem`; the families in `problems_suites` (ZDT, DTLZ2,
`distill`, `pipeline`), `problems_students` (the case study's students and SigOpt's definition
keys on them) and `problems_interactions` (`wide_lr`, `deep_lr`).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.problem import Problem, hypervolume_2d
from benchmarks.problems_interactions import INTERACTIONS
from benchmarks.problems_students import STUDENTS
from benchmarks.problems_suites import SUITES

__all__ = ["MIXED_PROBLEMS", "PROBLEMS", "Problem", "failure_rate", "hypervolume_2d"]

PROBLEMS: dict[str, Problem] = {**SUITES, **STUDENTS, **INTERACTIONS}

MIXED_PROBLEMS = ("distill", "pipeline", "student9", "bert17", "student_branches", "student_budget", "student_tasks",
                  "wide_lr", "deep_lr")


def failure_rate(problem: Problem, samples: int = 20000, seed: int = 0) -> float:
    """Share of uniformly random assignments that fail (for the problem descriptions)."""
    rng = np.random.default_rng(seed)
    failed = 0
    for _ in range(samples):
        assignment = {}
        for p in problem.spec["parameters"]:
            if p["type"] == "categorical":
                assignment[p["name"]] = p["categorical_values"][rng.integers(len(p["categorical_values"]))]
            elif p["type"] == "int":
                assignment[p["name"]] = int(rng.integers(p["bounds"]["min"], p["bounds"]["max"] + 1))
            elif p.get("transformation") == "log":
                assignment[p["name"]] = math.exp(rng.uniform(math.log(p["bounds"]["min"]), math.log(p["bounds"]["max"])))
            else:
                assignment[p["name"]] = rng.uniform(p["bounds"]["min"], p["bounds"]["max"])
        failed += problem.true_values(assignment) is None
    return failed / samples

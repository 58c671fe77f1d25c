"""The interaction problems, `wide_lr` and `deep_lr`: the best learning rate moves steeply with
the student's width or depth (see the section's comment)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.problem import Assignments, Problem
from benchmarks.problems_students import VOCABULARY, noisy_exact


# -- interactions: the best learning rate moves with the student's width or depth ----------------
# As in real distillation, wider (or deeper) students want smaller learning rates, steeply: a
# wide student trained at a learning rate that suits narrow ones misses the threshold, which
# the narrow students can just pass. The accurate end of the front is reached only by moving
# the architecture and the learning rate together.

_INTERACTION_WIDTHS = ("128", "256", "384", "512", "768", "1024")
_INTERACTION_BATCHES = ("8", "16", "32", "64")
_INTERACTION_TRAINING = [
    {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-6, "max": 1e-2}, "transformation": "log"},
    {"name": "batch_size", "type": "categorical", "categorical_values": list(_INTERACTION_BATCHES)},
    {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
    {"name": "warmup", "type": "double", "bounds": {"min": 0.0, "max": 0.3}},
    {"name": "alpha_ce", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
]
_INTERACTION_METRICS = [{"name": "exact", "objective": "maximize", "threshold": 60.0},
                        {"name": "num_parameters", "objective": "minimize"}]
# (learning-rate slope per decade of width, per decade of depth): which interaction dominates
_INTERACTION_SLOPES = {"wide_lr": (2.5, 0.5), "deep_lr": (0.5, 2.5)}
_MEMORY_LIMIT = 64 * 12 * 1024 * 0.5  # batch x layers x width beyond which a student runs out of memory

WIDE_LR_SPEC = {
    "name": "wide_lr",
    "parameters": [{"name": "hidden", "type": "categorical", "categorical_values": list(_INTERACTION_WIDTHS)},
                   {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 12}}, *_INTERACTION_TRAINING],
    "metrics": _INTERACTION_METRICS,
}
DEEP_LR_SPEC = {
    "name": "deep_lr",
    "parameters": [{"name": "n_heads", "type": "int", "bounds": {"min": 2, "max": 16}},
                   {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 24}}, *_INTERACTION_TRAINING],
    "metrics": _INTERACTION_METRICS,
}


def _best_log_lr(name: str, width, layers, batch):
    by_width, by_depth = _INTERACTION_SLOPES[name]
    return -3.5 + 0.5 * np.log10(batch / 32.0) - by_width * np.log10(width / 256.0) - by_depth * np.log10(layers / 4.0)


def _interaction_arrays(name: str, width, layers, lr, batch, dropout, warmup, alpha):
    """Vectorized ground truth: (exact, parameters in millions, failed). A 1024-wide student
    at the learning rate of a 256-wide one loses about 68 points on `wide_lr`, a 512-wide
    one about 17."""
    per_layer = 12.0 * width**2 / 1e6
    size_m = layers * per_layer + width * VOCABULARY / 1e6
    capacity = np.log2(layers * per_layer / 0.2)  # 0.2M: one layer of the narrowest student
    best = _best_log_lr(name, width, layers, batch)
    exact = (36.0 + 52.0 * (1.0 - np.exp(-0.18 * capacity)) - 30.0 * (np.log10(lr) - best) ** 2
             - 150.0 * (dropout - 0.1) ** 2 - 120.0 * (warmup - 0.08) ** 2 - 20.0 * (alpha - 0.6) ** 2
             - 0.8 * np.abs(np.log2(batch / 32.0)))
    out_of_memory = batch * layers * width > _MEMORY_LIMIT
    diverged = np.log10(lr) > best + 1.5
    return exact, size_m, out_of_memory | diverged


def _interaction_failure(name: str, a: Assignments) -> str:
    """Why a failed trial failed, as the platform records it: out of memory, else diverged."""
    width, layers = _interaction_columns(name, a)
    return "out_of_memory" if float(a["batch_size"]) * layers * width > _MEMORY_LIMIT else "diverged"


def _interaction_columns(name: str, a: Assignments) -> tuple[float, float]:
    if name == "wide_lr":
        return float(a["hidden"]), float(a["n_layers"])
    return 64.0 * a["n_heads"], float(a["n_layers"])


def _interaction_problem(name: str, spec: dict[str, Any], widths: np.ndarray, depths: np.ndarray) -> Problem:
    def true_values(a: Assignments) -> dict[str, float] | None:
        width, layers = _interaction_columns(name, a)
        exact, size, failed = _interaction_arrays(name, np.array([width]), np.array([layers]), a["learning_rate"],
                                                  float(a["batch_size"]), a["dropout"], a["warmup"], a["alpha_ce"])
        return None if failed[0] else {"exact": float(exact[0]), "num_parameters": float(size[0])}

    def front() -> np.ndarray:
        """Every width x depth x batch size; the doubles at their optimum."""
        grids = np.meshgrid(widths, depths, np.array([float(b) for b in _INTERACTION_BATCHES]), indexing="ij")
        width, layers, batch = (g.ravel() for g in grids)
        best_lr = 10 ** _best_log_lr(name, width, layers, batch)
        exact, size, failed = _interaction_arrays(name, width, layers, best_lr, batch, 0.1, 0.08, 0.6)
        ok = ~failed & (exact >= 60.0)
        return np.column_stack([-exact[ok], size[ok]])

    return Problem(name, spec, noisy_exact(true_values), true_values, (-60.0, 200.0), front,
                   failure_reason=lambda a: _interaction_failure(name, a))


INTERACTIONS: dict[str, Problem] = {
    "wide_lr": _interaction_problem("wide_lr", WIDE_LR_SPEC, np.array([float(w) for w in _INTERACTION_WIDTHS]),
                                    np.arange(1, 13)),
    "deep_lr": _interaction_problem("deep_lr", DEEP_LR_SPEC, 64.0 * np.arange(2, 17), np.arange(1, 25)),
}

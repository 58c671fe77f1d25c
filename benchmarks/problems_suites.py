"""The continuous suites and the first two mixed problems.

The continuous problems are pymoo's ZDT1, ZDT2, ZDT3 and DTLZ2 with 6 variables, reference
point (1.1, 1.1). The two mixed problems are designed here to look like the spaces users tune:

* `distill`: a model-compression run. Log learning rate, layers, width, optimizer, dropout,
  batch size, warm-up, log weight decay, distillation temperature and alpha; maximize
  accuracy (threshold 0.6, noisy observations), minimize parameter count, latency as a
  constraint metric; trials fail on out-of-memory (layers x width x batch too large) and
  diverge at high learning rates except with SGD.
* `pipeline`: a ZDT1-shaped front whose distance term also depends on a categorical kernel,
  an integer depth and a log-scale double; a cost constraint cuts the front, f2 has a
  threshold, and two failure regions (a corner of x2/x3, one kernel at large depth).

Their reference fronts are computed by enumeration: every combination of the discrete
parameters, a dense grid over the parameters that trade off, and the separable continuous
parameters at their analytic optimum (see `reference_front`).
"""

from __future__ import annotations

import numpy as np

from benchmarks.problem import Assignments, Problem


# -- continuous suites (pymoo) -------------------------------------------------------------------

def _pymoo_problem(name: str) -> Problem:
    from pymoo.problems import get_problem

    n_var = 6
    pymoo_problem = get_problem(name, n_var=n_var, **({"n_obj": 2} if name == "dtlz2" else {}))
    spec = {
        "name": name,
        "parameters": [{"name": f"x{i}", "type": "double", "bounds": {"min": 0.0, "max": 1.0}} for i in range(n_var)],
        "metrics": [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize"}],
    }

    def true_values(assignment: Assignments) -> dict[str, float]:
        x = np.array([[assignment[f"x{i}"] for i in range(n_var)]], dtype=float)
        f = pymoo_problem.evaluate(x)[0]
        return {"f1": float(f[0]), "f2": float(f[1])}

    def reference_front() -> np.ndarray:
        if name == "dtlz2":
            from pymoo.util.ref_dirs import get_reference_directions

            return pymoo_problem.pareto_front(get_reference_directions("das-dennis", 2, n_partitions=20000))
        if name == "zdt3":
            return pymoo_problem.pareto_front(n_points=20000)
        return pymoo_problem.pareto_front(n_pareto_points=20000)

    return Problem(name, spec, lambda a, rng: true_values(a), true_values, (1.1, 1.1), reference_front)


# -- distill: a model-compression search ---------------------------------------------------------

_WIDTHS = ("128", "256", "384", "768")
_OPTIMIZERS = ("adamw", "sgd", "lion")
_BEST_LOG10_LR = {"adamw": -3.5, "sgd": -2.3, "lion": -4.3}
_OPTIMIZER_PENALTY = {"adamw": 0.0, "sgd": 0.04, "lion": 0.01}

DISTILL_SPEC = {
    "name": "distill",
    "parameters": [
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-5, "max": 1e-2}, "transformation": "log"},
        {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "hidden", "type": "categorical", "categorical_values": list(_WIDTHS)},
        {"name": "optimizer", "type": "categorical", "categorical_values": list(_OPTIMIZERS)},
        {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
        {"name": "batch_size", "type": "int", "bounds": {"min": 8, "max": 128}},
        {"name": "warmup", "type": "double", "bounds": {"min": 0.0, "max": 0.3}},
        {"name": "weight_decay", "type": "double", "bounds": {"min": 1e-6, "max": 1e-1}, "transformation": "log"},
        {"name": "temperature", "type": "double", "bounds": {"min": 1.0, "max": 10.0}},
        {"name": "alpha", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
    ],
    "metrics": [
        {"name": "accuracy", "objective": "maximize", "threshold": 0.6},
        {"name": "size_m", "objective": "minimize"},
        {"name": "latency_ms", "objective": "minimize", "strategy": "constraint", "threshold": 9.0},
    ],
}


def _distill_arrays(lr, layers, width, optimizer, dropout, batch, warmup, decay, temperature, alpha):
    """Vectorized ground truth: (accuracy, size in millions, latency, failed)."""
    lr_best = np.vectorize(_BEST_LOG10_LR.get)(optimizer)
    penalty = np.vectorize(_OPTIMIZER_PENALTY.get)(optimizer)
    capacity = np.log2(layers * width / 128.0)
    accuracy = (0.93 - 0.32 * np.exp(-0.45 * capacity) - 0.12 * (np.log10(lr) - lr_best) ** 2
                - 1.2 * (dropout - 0.1) ** 2 - 1.5 * (warmup - 0.1) ** 2
                - 0.02 * (np.log2(batch) - 5.0) ** 2 - penalty
                - 0.02 * (np.log10(decay) + 2.0) ** 2 - 0.006 * (temperature - 4.0) ** 2 - 0.2 * (alpha - 0.7) ** 2)
    size_m = layers * 12.0 * width**2 / 1e6 + width * 30522 / 1e6
    latency_ms = 0.6 * layers * (width / 256.0) ** 1.5 + 0.01 * batch
    out_of_memory = layers * width * batch > 12 * 384 * 48
    diverged = (lr > 2.5e-3) & (optimizer != "sgd")
    return accuracy, size_m, latency_ms, out_of_memory | diverged


def _distill_true(a: Assignments) -> dict[str, float] | None:
    acc, size, latency, failed = _distill_arrays(
        np.array([a["learning_rate"]]), np.array([a["n_layers"]]), np.array([float(a["hidden"])]),
        np.array([a["optimizer"]]), *(np.array([a[k]]) for k in ("dropout", "batch_size", "warmup", "weight_decay",
                                                                 "temperature", "alpha")))
    if failed[0]:
        return None
    return {"accuracy": float(acc[0]), "size_m": float(size[0]), "latency_ms": float(latency[0])}


def _distill_observed(a: Assignments, rng: np.random.Generator) -> dict[str, float] | None:
    values = _distill_true(a)
    if values is not None:
        values["accuracy"] += float(rng.normal(0.0, 0.005))  # evaluation noise
    return values


def _distill_front() -> np.ndarray:
    """All layers x widths x optimizers x batch sizes x 80 learning rates; dropout, warm-up,
    weight decay, temperature and alpha at their separable optimum."""
    grids = np.meshgrid(np.logspace(-5, -2, 80), np.arange(1, 13), np.array([float(w) for w in _WIDTHS]),
                        np.array(_OPTIMIZERS), np.arange(8, 129), indexing="ij")
    lr, layers, width, optimizer, batch = (g.ravel() for g in grids)
    acc, size, latency, failed = _distill_arrays(lr, layers, width, optimizer, 0.1, batch, 0.1, 1e-2, 4.0, 0.7)
    ok = ~failed & (latency <= 9.0) & (acc >= 0.6)
    return np.column_stack([-acc[ok], size[ok]])


# -- pipeline: a ZDT1-shaped front over a mixed space ---------------------------------------------

_KERNEL_OFFSET = {"rbf": 0.0, "poly": 0.25, "linear": 0.5, "sigmoid": 0.9}

PIPELINE_SPEC = {
    "name": "pipeline",
    "parameters": [
        *({"name": f"x{i}", "type": "double", "bounds": {"min": 0.0, "max": 1.0}} for i in range(1, 5)),
        {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "kernel", "type": "categorical", "categorical_values": list(_KERNEL_OFFSET)},
        {"name": "scale", "type": "double", "bounds": {"min": 1e-3, "max": 10.0}, "transformation": "log"},
    ],
    "metrics": [
        {"name": "f1", "objective": "minimize"},
        {"name": "f2", "objective": "minimize", "threshold": 0.8},
        {"name": "cost", "objective": "minimize", "strategy": "constraint", "threshold": 8.0},
    ],
}


def _pipeline_arrays(x1, x2, x3, x4, depth, kernel, scale):
    offset = np.vectorize(_KERNEL_OFFSET.get)(kernel)
    g = (1.0 + 3.0 * ((x2 - 0.3) ** 2 + (x3 - 0.3) ** 2 + (x4 - 0.3) ** 2) + offset
         + 0.12 * np.abs(depth - 5) + 0.08 * (np.log10(scale) + 1.0) ** 2)
    f1 = x1
    f2 = g * (1.0 - np.sqrt(np.clip(x1 / g, 0.0, 1.0)))
    cost = depth + 4.0 * x1
    failed = ((x2 > 0.7) & (x3 > 0.7)) | ((kernel == "poly") & (depth > 6))
    return f1, f2, cost, failed


def _pipeline_true(a: Assignments) -> dict[str, float] | None:
    f1, f2, cost, failed = _pipeline_arrays(*(np.array([a[k]]) for k in ("x1", "x2", "x3", "x4", "depth", "kernel", "scale")))
    if failed[0]:
        return None
    return {"f1": float(f1[0]), "f2": float(f2[0]), "cost": float(cost[0])}


def _pipeline_front() -> np.ndarray:
    """Every depth x kernel x 4001 values of x1; x2..x4 = 0.3 and scale = 0.1 (separable optimum)."""
    grids = np.meshgrid(np.linspace(0, 1, 4001), np.arange(1, 9), np.array(list(_KERNEL_OFFSET)), indexing="ij")
    x1, depth, kernel = (g.ravel() for g in grids)
    f1, f2, cost, failed = _pipeline_arrays(x1, 0.3, 0.3, 0.3, depth, kernel, 0.1)
    ok = ~failed & (cost <= 8.0) & (f2 <= 0.8)
    return np.column_stack([f1[ok], f2[ok]])


SUITES: dict[str, Problem] = {
    **{name: _pymoo_problem(name) for name in ("zdt1", "zdt2", "zdt3", "dtlz2")},
    "distill": Problem("distill", DISTILL_SPEC, _distill_observed, _distill_true, (-0.6, 60.0), _distill_front),
    "pipeline": Problem("pipeline", PIPELINE_SPEC, lambda a, rng: _pipeline_true(a), _pipeline_true, (1.0, 0.8),
                        _pipeline_front),
}

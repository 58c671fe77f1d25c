"""Benchmark problems for the optimizer: four continuous test suites and two mixed spaces.

Every problem is an experiment spec (SigOpt's shape, as users write it) plus an `evaluate`
that returns the metric values a trial would report, or None when the trial fails. Quality is
the hypervolume of the observed points that meet every threshold, as a fraction of the true
front's hypervolume (same reference point), computed on noise-free values.

The continuous problems are pymoo's ZDT1, ZDT2, ZDT3 and DTLZ2 with 6 variables, reference
point (1.1, 1.1). The two mixed problems are designed here to look like the spaces users tune:

* `distill`: a model-compression run. Log learning rate, layers, width, optimizer, dropout,
  batch size, warm-up, log weight decay, distillation temperature and alpha; maximize accuracy (threshold 0.6, noisy observations), minimize
  parameter count, latency as a constraint metric; trials fail on out-of-memory (layers x
  width x batch too large) and diverge at high learning rates except with SGD.
* `pipeline`: a ZDT1-shaped front whose distance term also depends on a categorical kernel,
  an integer depth and a log-scale double; a cost constraint cuts the front, f2 has a
  threshold, and two failure regions (a corner of x2/x3, one kernel at large depth).

Their reference fronts are computed by enumeration: every combination of the discrete
parameters, a dense grid over the parameters that trade off, and the separable continuous
parameters at their analytic optimum (see `reference_front`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pymoo.indicators.hv import HV

Assignments = dict[str, Any]


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

    def observe(self, assignments: Assignments, rng: np.random.Generator, task: str | None) -> dict[str, float] | None:
        if self.spec.get("tasks"):
            return self.evaluate(assignments, rng, task)
        return self.evaluate(assignments, rng)

    def task_cost(self, task: str | None) -> float:
        return next((t["cost"] for t in self.spec.get("tasks", ()) if t["name"] == task), 1.0)

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
        return hypervolume_2d(np.array(points).reshape(-1, dimensions), self.reference_point) / true_hypervolume(self.name)


def hypervolume_2d(points: np.ndarray, reference: tuple[float, ...]) -> float:
    """Hypervolume (minimization) by pymoo's indicator, so the judge is independent of the
    optimizer's own code; with one metric, how far the best point is past the reference."""
    if len(points) == 0:
        return 0.0
    if len(reference) == 1:
        return float(max(reference[0] - np.min(points), 0.0))
    return float(HV(ref_point=np.asarray(reference, dtype=float))(np.asarray(points, dtype=float)))


@functools.cache
def true_hypervolume(name: str) -> float:
    problem = PROBLEMS[name]
    return hypervolume_2d(problem.reference_front(), problem.reference_point)


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


# -- BERT students: the case study's own search, as a function --------------------------------
#
# Shaped like SigOpt's BERT-for-SQuAD-2.0 distillation (experiments/bert_squad2.yaml): exact
# match (noisy, threshold 50 = answering nothing) against the student's parameter count, a
# deterministic function of the architecture. Accuracy rises with capacity and falls off as
# each training hyperparameter leaves its optimum (the learning rate's optimum moves with the
# batch size and the model's width, as in practice); trials run out of memory for the largest
# students at large batches, and diverge at very high learning rates.

_STUDENT_WIDTHS = ("256", "384", "512", "768")
_STUDENT_BATCHES = ("8", "16", "32", "64")
_VOCABULARY = 30522

STUDENT9_SPEC = {
    "name": "student9",
    "parameters": [
        {"name": "hidden", "type": "categorical", "categorical_values": list(_STUDENT_WIDTHS)},
        {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "ffn_ratio", "type": "int", "bounds": {"min": 1, "max": 4}},
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-6, "max": 1e-2}, "transformation": "log"},
        {"name": "temperature", "type": "double", "bounds": {"min": 1.0, "max": 10.0}},
        {"name": "alpha_ce", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
        {"name": "batch_size", "type": "categorical", "categorical_values": list(_STUDENT_BATCHES)},
        {"name": "warmup", "type": "double", "bounds": {"min": 0.0, "max": 0.3}},
    ],
    "metrics": [
        {"name": "exact", "objective": "maximize", "threshold": 50.0},
        {"name": "num_parameters", "objective": "minimize"},
    ],
}


def _student9_arrays(width, layers, ffn, lr, temperature, alpha, dropout, batch, warmup):
    """Vectorized ground truth: (exact, parameters in millions, failed)."""
    per_layer = (4.0 + 2.0 * ffn) * width**2 / 1e6
    size_m = layers * per_layer + width * _VOCABULARY / 1e6
    capacity = np.log2(layers * per_layer / 0.4)  # 0.4M: one layer of the narrowest, thinnest student
    # the best learning rate grows with the batch (square-root rule) and shrinks with width
    best_log_lr = -4.2 + 0.5 * np.log10(batch / 32.0) - 0.8 * np.log10(width / 512.0)
    exact = (36.0 + 42.0 * (1.0 - np.exp(-0.32 * capacity))
             - 12.0 * (np.log10(lr) - best_log_lr) ** 2
             - 0.3 * (temperature - 3.0 - 0.25 * np.log2(width / 256.0)) ** 2
             - 25.0 * (alpha - 0.6) ** 2 - 150.0 * (dropout - 0.1) ** 2 - 120.0 * (warmup - 0.08) ** 2
             - 0.8 * np.abs(np.log2(batch / 32.0)))
    memory = batch * layers * width * (1.0 + 0.5 * ffn)
    out_of_memory = memory > 64 * 8 * 768 * 2.2
    diverged = np.log10(lr) > best_log_lr + 2.0
    return exact, size_m, out_of_memory | diverged


_STUDENT9_ORDER = ("hidden", "n_layers", "ffn_ratio", "learning_rate", "temperature", "alpha_ce", "dropout",
                   "batch_size", "warmup")


def _student9_true(a: Assignments) -> dict[str, float] | None:
    columns = [np.array([float(a[k]) if k in ("hidden", "batch_size") else a[k]]) for k in _STUDENT9_ORDER]
    exact, size, failed = _student9_arrays(*columns)
    if failed[0]:
        return None
    return {"exact": float(exact[0]), "num_parameters": float(size[0])}


def _student9_observed(a: Assignments, rng: np.random.Generator) -> dict[str, float] | None:
    values = _student9_true(a)
    if values is not None:
        values["exact"] += float(rng.normal(0.0, 0.5))  # evaluation noise: a few hundred questions
    return values


def _student9_front() -> np.ndarray:
    """Every width x layers x FFN ratio x batch size; the doubles at their optimum (each has
    one inside its bounds, given the discrete parameters)."""
    grids = np.meshgrid(np.array([float(w) for w in _STUDENT_WIDTHS]), np.arange(1, 13), np.arange(1, 5),
                        np.array([float(b) for b in _STUDENT_BATCHES]), indexing="ij")
    width, layers, ffn, batch = (g.ravel() for g in grids)
    best_lr = 10 ** (-4.2 + 0.5 * np.log10(batch / 32.0) - 0.8 * np.log10(width / 512.0))
    exact, size, failed = _student9_arrays(width, layers, ffn, best_lr, 3.0 + 0.25 * np.log2(width / 256.0),
                                           0.6, 0.1, batch, 0.08)
    ok = ~failed & (exact >= 50.0)
    return np.column_stack([-exact[ok], size[ok]])


def _bert17_spec() -> dict[str, Any]:
    """The case study's 17 parameters and two optimized metrics, from experiments/bert_squad2.yaml."""
    import yaml

    case_study = yaml.safe_load((Path(__file__).resolve().parent.parent / "experiments" / "bert_squad2.yaml").read_text())
    return {"name": "bert17", "parameters": case_study["parameters"],
            "metrics": [m for m in case_study["metrics"] if m.get("strategy", "optimize") == "optimize"]}


def _bert17_arrays(a: dict[str, np.ndarray]):
    """DistilBERT-style student: 768 wide, `n_heads` heads of 64 kept per layer (head pruning),
    a 3072-wide FFN; (exact, parameters, failed)."""
    layers, heads = a["n_layers"], a["n_heads"]
    parameters = (_VOCABULARY + 512 + 2) * 768 + layers * (heads * 64 * 768 * 4 + 2 * 768 * 3072 + 3072 + 6 * 768) + 768 * 2
    capacity = np.log2(layers * (heads + 8.0) / 9.0)
    batch = a["train_batch_size"]
    best_log_lr = -4.4 + 0.5 * np.log10(batch / 16.0)
    log_lr = np.log10(a["learning_rate"])
    seed_luck = 0.6 * np.sin(2.399 * a["pruning_seed"])  # which heads survive pruning: a deterministic lottery
    exact = (42.0 + 38.0 * (1.0 - np.exp(-0.28 * capacity))
             - 2.0 * (log_lr - best_log_lr) ** 2
             - 0.3 * (np.log10(a["adam_epsilon"]) + 8.0) ** 2 / 4.0
             - 0.25 * (np.log10(a["weight_decay"]) + 4.0) ** 2 / 4.0
             - 30.0 * np.clip(0.85 - a["beta_1"], 0.0, None) ** 2 - 200.0 * np.clip(0.98 - a["beta_2"], 0.0, None) ** 2
             - 8.0 * (a["alpha_ce"] - 0.5) ** 2 - 0.15 * (a["temperature"] - 3.0) ** 2
             - 25.0 * np.clip(a["initializer_range"] - 0.05, 0.0, None) ** 2
             - 12.0 * (a["dropout"] - 0.1) ** 2 - 6.0 * (a["attention_dropout"] - 0.1) ** 2
             - 5.0 * (a["qa_dropout"] - 0.1) ** 2 - 0.0004 * (a["warm_up_steps"] - 30.0) ** 2
             + seed_luck)
    memory = (batch + 0.5 * a["eval_batch_size"]) * layers * (heads + 6.0)
    out_of_memory = memory > 32 * 20 * 18 * 0.6
    diverged = log_lr > best_log_lr + 2.3
    return exact, parameters / 1e6, out_of_memory | diverged


def _bert17_true(assignments: Assignments) -> dict[str, float] | None:
    exact, size, failed = _bert17_arrays({k: np.array([float(v)]) for k, v in assignments.items()})
    if failed[0]:
        return None
    return {"exact": float(exact[0]), "num_parameters": float(size[0])}


def _bert17_observed(a: Assignments, rng: np.random.Generator) -> dict[str, float] | None:
    values = _bert17_true(a)
    if values is not None:
        values["exact"] += float(rng.normal(0.0, 0.5))
    return values


def _bert17_front() -> np.ndarray:
    """Every n_layers x n_heads x train batch x pruning seed; the rest at their optimum
    (the smallest eval batch, which never runs out of memory first)."""
    grids = np.meshgrid(np.arange(1, 21), np.arange(1, 13), np.arange(4, 33), np.arange(1, 101), indexing="ij")
    layers, heads, batch, seed = (g.ravel().astype(float) for g in grids)
    optimum = {"n_layers": layers, "n_heads": heads, "train_batch_size": batch, "pruning_seed": seed,
               "learning_rate": 10 ** (-4.4 + 0.5 * np.log10(batch / 16.0)), "adam_epsilon": 1e-8,
               "weight_decay": 1e-4, "beta_1": 0.9, "beta_2": 0.999, "alpha_ce": 0.5, "temperature": 3.0,
               "initializer_range": 0.02, "dropout": 0.1, "attention_dropout": 0.1, "qa_dropout": 0.1,
               "warm_up_steps": 30.0, "eval_batch_size": 4.0}
    exact, size, failed = _bert17_arrays(optimum)
    ok = ~failed & (exact >= 50.0)
    return np.column_stack([-exact[ok], size[ok]])


# -- SigOpt's definition keys: a conditional space, linear constraints, cheaper tasks ------------

STUDENT_BRANCHES_SPEC = {
    "name": "student_branches",
    "conditionals": [{"name": "block", "values": ["dense", "experts"]}],
    "parameters": [
        {"name": "hidden", "type": "categorical", "categorical_values": list(_STUDENT_WIDTHS)},
        {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "ffn_ratio", "type": "int", "bounds": {"min": 1, "max": 4}, "conditions": {"block": ["dense"]}},
        {"name": "n_experts", "type": "int", "bounds": {"min": 2, "max": 8}, "conditions": {"block": ["experts"]}},
        {"name": "router_temperature", "type": "double", "bounds": {"min": 0.1, "max": 3.0},
         "conditions": {"block": ["experts"]}},
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-6, "max": 1e-2}, "transformation": "log"},
        {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
        {"name": "batch_size", "type": "categorical", "categorical_values": list(_STUDENT_BATCHES)},
    ],
    "metrics": [
        {"name": "exact", "objective": "maximize", "threshold": 50.0},
        {"name": "num_parameters", "objective": "minimize"},
    ],
}


def _branches_arrays(width, layers, experts_block, ffn, experts, router, lr, dropout, batch):
    """A dense FFN or a mixture of small experts (2 active) per layer: the experts buy accuracy
    per parameter once their router temperature is right, at a fixed routing cost."""
    dense_size = (4.0 + 2.0 * ffn) * width**2
    expert_size = (4.0 + 0.75 * experts) * width**2
    per_layer = np.where(experts_block, expert_size, dense_size)
    effective = np.where(experts_block, (4.0 + 2.0 * np.log2(experts) + 1.5) * width**2, dense_size)
    size_m = (layers * per_layer + width * _VOCABULARY) / 1e6
    capacity = np.log2(layers * effective / 1e6 / 0.4)
    best_log_lr = -4.2 + 0.5 * np.log10(batch / 32.0) - 0.8 * np.log10(width / 512.0)
    router_penalty = np.where(experts_block, 10.0 * np.log(router / 0.7) ** 2 + 1.5, 0.0)
    exact = (36.0 + 42.0 * (1.0 - np.exp(-0.32 * capacity)) - 12.0 * (np.log10(lr) - best_log_lr) ** 2
             - 150.0 * (dropout - 0.1) ** 2 - 0.8 * np.abs(np.log2(batch / 32.0)) - router_penalty)
    memory = batch * layers * width * np.where(experts_block, 1.0 + 0.35 * experts, 1.0 + 0.5 * ffn)
    failed = (memory > 64 * 8 * 768 * 2.2) | (np.log10(lr) > best_log_lr + 2.0)
    return exact, size_m, failed


def _branches_true(a: Assignments) -> dict[str, float] | None:
    experts_block = a["block"] == "experts"
    exact, size, failed = _branches_arrays(
        np.array([float(a["hidden"])]), np.array([a["n_layers"]]), np.array([experts_block]),
        np.array([a.get("ffn_ratio", 1)]), np.array([a.get("n_experts", 2)]), np.array([a.get("router_temperature", 0.7)]),
        np.array([a["learning_rate"]]), np.array([a["dropout"]]), np.array([float(a["batch_size"])]))
    if failed[0]:
        return None
    return {"exact": float(exact[0]), "num_parameters": float(size[0])}


def _noisy_exact(true_values: Callable[[Assignments], dict[str, float] | None]):
    def observed(a: Assignments, rng: np.random.Generator) -> dict[str, float] | None:
        values = true_values(a)
        if values is not None:
            values["exact"] += float(rng.normal(0.0, 0.5))
        return values
    return observed


def _branches_front() -> np.ndarray:
    widths, layers, batches = np.array([float(w) for w in _STUDENT_WIDTHS]), np.arange(1, 13), \
        np.array([float(b) for b in _STUDENT_BATCHES])
    fronts = []
    for experts_block, choices in ((False, np.arange(1, 5)), (True, np.arange(2, 9))):
        grids = np.meshgrid(widths, layers, choices, batches, indexing="ij")
        width, layer, choice, batch = (g.ravel() for g in grids)
        best_lr = 10 ** (-4.2 + 0.5 * np.log10(batch / 32.0) - 0.8 * np.log10(width / 512.0))
        exact, size, failed = _branches_arrays(width, layer, np.full(len(width), experts_block), choice, choice, 0.7,
                                               best_lr, 0.1, batch)
        ok = ~failed & (exact >= 50.0)
        fronts.append(np.column_stack([-exact[ok], size[ok]]))
    return np.vstack(fronts)


CONSTRAINED_SPEC = {
    "name": "student_budget",
    "parameters": [
        {"name": "hidden", "type": "categorical", "categorical_values": list(_STUDENT_WIDTHS)},
        {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "n_heads", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "pretrain_share", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        {"name": "distill_share", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        {"name": "finetune_share", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-6, "max": 1e-2}, "transformation": "log"},
        {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
    ],
    "linear_constraints": [
        # a fixed compute budget split three ways
        {"type": "less_than", "threshold": 1.0, "terms": [{"name": "pretrain_share", "weight": 1.0},
                                                          {"name": "distill_share", "weight": 1.0},
                                                          {"name": "finetune_share", "weight": 1.0}]},
        # the task data is seen at least a little
        {"type": "greater_than", "threshold": 0.2, "terms": [{"name": "distill_share", "weight": 1.0},
                                                             {"name": "finetune_share", "weight": 1.0}]},
        # a latency budget on depth and attention width
        {"type": "less_than", "threshold": 16, "terms": [{"name": "n_layers", "weight": 1.0},
                                                         {"name": "n_heads", "weight": 1.0}]},
    ],
    "metrics": [
        {"name": "exact", "objective": "maximize", "threshold": 50.0},
        {"name": "num_parameters", "objective": "minimize"},
    ],
}


def _budget_arrays(width, layers, heads, pretrain, distill, finetune, lr, dropout):
    """Accuracy from capacity (layers, heads of 64, width) and from how the compute is split:
    each share has diminishing returns, so the best splits spend the whole budget."""
    attention = np.minimum(heads * 64.0, width)
    per_layer = (2.0 * attention * width + 2.0 * width * width + 8.0 * width * width)
    size_m = (layers * per_layer + width * _VOCABULARY) / 1e6
    capacity = np.log2(layers * per_layer / 1e6 / 0.4)
    best_log_lr = -4.2 - 0.8 * np.log10(width / 512.0)
    training = 5.0 * np.log1p(4.0 * pretrain) + 7.0 * np.log1p(6.0 * distill) + 4.0 * np.log1p(5.0 * finetune)
    exact = (18.0 + 40.0 * (1.0 - np.exp(-0.32 * capacity)) + training - 12.0 * (np.log10(lr) - best_log_lr) ** 2
             - 150.0 * (dropout - 0.1) ** 2)
    failed = (layers * width * (1.0 + heads / 12.0) > 12 * 768 * 1.1) | (np.log10(lr) > best_log_lr + 2.0)
    return exact, size_m, failed


_BUDGET_ORDER = ("hidden", "n_layers", "n_heads", "pretrain_share", "distill_share", "finetune_share", "learning_rate",
                 "dropout")


def _budget_true(a: Assignments) -> dict[str, float] | None:
    exact, size, failed = _budget_arrays(*(np.array([float(a[k])]) for k in _BUDGET_ORDER))
    if failed[0]:
        return None
    return {"exact": float(exact[0]), "num_parameters": float(size[0])}


def _budget_front() -> np.ndarray:
    """Every width x layers x heads within the latency budget; the best split of the compute
    budget by a fine grid on the simplex; the learning rate and dropout at their optimum."""
    share = np.linspace(0.0, 1.0, 201)
    p, d = np.meshgrid(share, share, indexing="ij")
    f = 1.0 - p - d
    ok = (f >= 0) & (d + f >= 0.2)
    f = np.clip(f, 0.0, None)
    training = (5.0 * np.log1p(4.0 * p) + 7.0 * np.log1p(6.0 * d) + 4.0 * np.log1p(5.0 * f))[ok].max()
    grids = np.meshgrid(np.array([float(w) for w in _STUDENT_WIDTHS]), np.arange(1, 13), np.arange(1, 13), indexing="ij")
    width, layers, heads = (g.ravel() for g in grids)
    within = layers + heads <= 16
    width, layers, heads = width[within], layers[within], heads[within]
    best_lr = 10 ** (-4.2 - 0.8 * np.log10(width / 512.0))
    exact, size, failed = _budget_arrays(width, layers, heads, 0.0, 0.0, 0.0, best_lr, 0.1)
    exact = exact + training
    keep = ~failed & (exact >= 50.0)
    return np.column_stack([-exact[keep], size[keep]])


STUDENT_TASKS_SPEC = {
    "name": "student_tasks",
    "parameters": [p for p in STUDENT9_SPEC["parameters"]],
    "metrics": [{"name": "exact", "objective": "maximize"}],
    "tasks": [{"name": "one_epoch", "cost": 0.25}, {"name": "full", "cost": 1.0}],
}


def _tasks_true(a: Assignments) -> dict[str, float] | None:
    values = _student9_true(a)
    return None if values is None else {"exact": values["exact"]}


def _tasks_observed(a: Assignments, rng: np.random.Generator, task: str | None) -> dict[str, float] | None:
    """One epoch is a noisy, biased view of the full run: lower, compressed, and kinder to high
    learning rates (they have not diverged yet)."""
    values = _tasks_true(a)
    if values is None:
        return None
    if task == "one_epoch":
        log_lr_excess = max(np.log10(a["learning_rate"]) + 4.2, 0.0)
        return {"exact": 0.7 * values["exact"] + 8.0 + 3.0 * log_lr_excess + float(rng.normal(0.0, 1.5))}
    return {"exact": values["exact"] + float(rng.normal(0.0, 0.5))}


def _tasks_front() -> np.ndarray:
    front = _student9_front()
    return np.array([[front[:, 0].min()]])


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
    size_m = layers * per_layer + width * _VOCABULARY / 1e6
    capacity = np.log2(layers * per_layer / 0.2)  # 0.2M: one layer of the narrowest student
    best = _best_log_lr(name, width, layers, batch)
    exact = (36.0 + 52.0 * (1.0 - np.exp(-0.18 * capacity)) - 30.0 * (np.log10(lr) - best) ** 2
             - 150.0 * (dropout - 0.1) ** 2 - 120.0 * (warmup - 0.08) ** 2 - 20.0 * (alpha - 0.6) ** 2
             - 0.8 * np.abs(np.log2(batch / 32.0)))
    out_of_memory = batch * layers * width > 64 * 12 * 1024 * 0.5
    diverged = np.log10(lr) > best + 1.5
    return exact, size_m, out_of_memory | diverged


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

    return Problem(name, spec, _noisy_exact(true_values), true_values, (-60.0, 200.0), front)


PROBLEMS: dict[str, Problem] = {
    **{name: _pymoo_problem(name) for name in ("zdt1", "zdt2", "zdt3", "dtlz2")},
    "distill": Problem("distill", DISTILL_SPEC, _distill_observed, _distill_true, (-0.6, 60.0), _distill_front),
    "pipeline": Problem("pipeline", PIPELINE_SPEC, lambda a, rng: _pipeline_true(a), _pipeline_true, (1.0, 0.8),
                        _pipeline_front),
    "student9": Problem("student9", STUDENT9_SPEC, _student9_observed, _student9_true, (-50.0, 120.0),
                        _student9_front),
    "bert17": Problem("bert17", _bert17_spec(), _bert17_observed, _bert17_true, (-50.0, 180.0), _bert17_front),
    "student_branches": Problem("student_branches", STUDENT_BRANCHES_SPEC, _noisy_exact(_branches_true), _branches_true,
                                (-50.0, 120.0), _branches_front),
    "student_budget": Problem("student_budget", CONSTRAINED_SPEC, _noisy_exact(_budget_true), _budget_true,
                              (-50.0, 120.0), _budget_front),
    "student_tasks": Problem("student_tasks", STUDENT_TASKS_SPEC, _tasks_observed, _tasks_true, (-40.0,), _tasks_front,
                             budget_units=30.0),
    "wide_lr": _interaction_problem("wide_lr", WIDE_LR_SPEC, np.array([float(w) for w in _INTERACTION_WIDTHS]),
                                    np.arange(1, 13)),
    "deep_lr": _interaction_problem("deep_lr", DEEP_LR_SPEC, 64.0 * np.arange(2, 17), np.arange(1, 25)),
}

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

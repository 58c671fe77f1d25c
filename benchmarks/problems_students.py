"""BERT students: the case study's own search as functions, and SigOpt's definition keys on it
(a conditional space, linear constraints, cheaper tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.problem import Assignments, Problem


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
VOCABULARY = 30522

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
    size_m = layers * per_layer + width * VOCABULARY / 1e6
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
    parameters = (VOCABULARY + 512 + 2) * 768 + layers * (heads * 64 * 768 * 4 + 2 * 768 * 3072 + 3072 + 6 * 768) + 768 * 2
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
    size_m = (layers * per_layer + width * VOCABULARY) / 1e6
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


def noisy_exact(true_values: Callable[[Assignments], dict[str, float] | None]):
    """The observed values: the true ones with `exact`'s evaluation noise (a few hundred questions)."""
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
    size_m = (layers * per_layer + width * VOCABULARY) / 1e6
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


STUDENTS: dict[str, Problem] = {
    "student9": Problem("student9", STUDENT9_SPEC, noisy_exact(_student9_true), _student9_true, (-50.0, 120.0),
                        _student9_front),
    "bert17": Problem("bert17", _bert17_spec(), noisy_exact(_bert17_true), _bert17_true, (-50.0, 180.0), _bert17_front),
    "student_branches": Problem("student_branches", STUDENT_BRANCHES_SPEC, noisy_exact(_branches_true), _branches_true,
                                (-50.0, 120.0), _branches_front),
    "student_budget": Problem("student_budget", CONSTRAINED_SPEC, noisy_exact(_budget_true), _budget_true,
                              (-50.0, 120.0), _budget_front),
    "student_tasks": Problem("student_tasks", STUDENT_TASKS_SPEC, _tasks_observed, _tasks_true, (-40.0,), _tasks_front,
                             budget_units=30.0),
}

"""Built-in objectives for demos, tests and benchmarks, with matching experiment specs.

Each takes `(assignments, context)` like any paretune objective, so the same tuning loop runs
them, the BERT trial and users' own code.
"""

from __future__ import annotations

import math
import time
from typing import Any

from paretune.failures import OutOfMemory
from paretune.trial import TrialContext


def size_vs_error(assignments: dict[str, Any], context: TrialContext | None = None) -> dict[str, float]:
    """A small model-size/accuracy trade-off, shaped like the BERT case study.

    `width` (log) and `depth` buy accuracy at the price of size; `optimizer` shifts accuracy;
    configurations above a memory budget fail like a GPU out-of-memory error. Reports one
    checkpoint per "epoch" so the checkpoint path is exercised. `sleep_s` in the context's
    settings makes each call take that long (to watch a flow work).
    """
    context = context or TrialContext()
    width = float(assignments["width"])
    depth = int(assignments["depth"])
    optimizer_bonus = {"adamw": 0.0, "sgd": -0.04, "lamb": 0.01}[assignments.get("optimizer", "adamw")]
    size = width * depth
    if size > float(context.settings.get("memory_budget", 3000.0)):
        raise OutOfMemory(f"{size:.0f} units exceed the memory budget")
    capacity = 1.0 - math.exp(-size / 400.0)
    lr = float(assignments.get("learning_rate", 1e-3))
    lr_penalty = 0.15 * math.log10(lr / 1e-3) ** 2
    accuracy = max(0.0, 0.9 * capacity - lr_penalty + optimizer_bonus)
    epochs = int(context.settings.get("epochs", 2))
    for epoch in range(1, epochs + 1):
        context.report_checkpoint(epoch, {"accuracy": accuracy * epoch / epochs})
    time.sleep(float(context.settings.get("sleep_s", 0.0)))
    return {"accuracy": accuracy, "size": size, "latency_ms": 0.01 * size + depth}


SIZE_VS_ERROR_SPEC: dict[str, Any] = {
    "name": "demo-size-vs-accuracy",
    "parameters": [
        {"name": "width", "type": "double", "bounds": {"min": 16, "max": 1024}, "transformation": "log"},
        {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1.0e-5, "max": 1.0e-1}, "transformation": "log"},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd", "lamb"]},
    ],
    "metrics": [
        {"name": "accuracy", "objective": "maximize", "strategy": "optimize", "threshold": 0.3},
        {"name": "size", "objective": "minimize", "strategy": "optimize"},
        {"name": "latency_ms", "objective": "minimize", "strategy": "store"},
    ],
    "observation_budget": 30,
    "parallel_bandwidth": 2,
    "metadata": {"objective": "paretune.testfunctions:size_vs_error", "trial": {"epochs": 2}},
}

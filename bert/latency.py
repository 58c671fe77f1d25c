"""Batch-1 inference latency: what a deployed QA model answers one question in."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def measure_latency_ms(
    model: nn.Module, inputs: dict[str, torch.Tensor], warmup: int = 3, repeats: int = 20
) -> float:
    """Median wall time in milliseconds of one forward pass on `inputs` (a batch of one window).

    The median, after `warmup` untimed passes, so one-off costs (allocator growth, kernel
    selection) and scheduler hiccups do not decide the metric. CUDA work is synchronised
    before each clock read.
    """
    if repeats < 1:
        raise ValueError(f"latency repeats must be >= 1, got {repeats}")
    device = next(model.parameters()).device
    batch = {name: tensor[:1].to(device) for name, tensor in inputs.items()}
    was_training = model.training
    model.eval()
    timings = []
    with torch.inference_mode():
        for step in range(warmup + repeats):
            _synchronize(device)
            started = time.perf_counter()
            model(**batch)
            _synchronize(device)
            if step >= warmup:
                timings.append((time.perf_counter() - started) * 1000.0)
    model.train(was_training)
    return statistics.median(timings)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

"""Objectives for the orchestration tests, importable by Dask workers as `tests.objectives:...`."""

from __future__ import annotations

import os
import time
from typing import Any

from paretune.failures import OutOfMemory
from paretune.trial import TrialContext


def sleep_for(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Sleep `duration` seconds in `epochs` steps, reporting a checkpoint after each."""
    duration = float(assignments["duration"])
    epochs = int(context.settings.get("epochs", 2))
    for epoch in range(1, epochs + 1):
        time.sleep(duration / epochs)
        context.report_checkpoint(epoch, {"loss": duration / epoch})
    return {"loss": duration, "cost": 1.0 / duration}


def misbehave(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Fail in the way `context.settings['modes']` names for this suggestion id (cycling)."""
    modes = context.settings["modes"]
    mode = modes[(context.suggestion_id or 0) % len(modes)]
    if mode == "raise":
        raise ValueError("boom")
    if mode == "nan":
        return {"loss": float("nan"), "cost": 1.0}
    if mode == "hang":
        time.sleep(float(context.settings.get("hang_s", 120)))
    if mode == "die":
        os._exit(1)
    if mode == "oom":
        raise OutOfMemory("needs 80 GiB")
    return {"loss": float(assignments["duration"]), "cost": 1.0}


def logged_sleep(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Sleep `duration` seconds, writing "start <suggestion> <pid>" and "end <suggestion>" lines to
    the file `context.settings['log']`: the tests' side channel for what really ran, and where."""
    log = context.settings["log"]
    _append(log, f"start {context.suggestion_id} {os.getpid()}")
    time.sleep(float(assignments["duration"]))
    _append(log, f"end {context.suggestion_id}")
    return {"loss": float(assignments["duration"]), "cost": 1.0 / float(assignments["duration"])}


def numpy_and_torch_metrics(assignments: dict[str, Any], context: TrialContext) -> dict[str, Any]:
    """What real training code returns: numpy and torch scalars, and one metric the spec does not declare."""
    import numpy as np
    import torch

    duration = float(assignments["duration"])
    return {"loss": np.float32(duration), "cost": torch.tensor(1.0 / duration), "steps": np.int64(12)}


def _append(path: str, line: str) -> None:
    """One write of one line to a file opened for appending: lines from many processes never mix."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)


def task_aware(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Reports what it was asked to run: its task's cost and the `epochs` its settings give it;
    its loss comes as SigOpt's value object, with a measured standard deviation."""
    loss = float(assignments["x"]) ** 2 + 0.1 * (1.0 - context.task_cost)
    return {"loss": {"value": loss, "value_stddev": 0.01}, "cost": context.task_cost,
            "epochs": float(context.settings["epochs"])}

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

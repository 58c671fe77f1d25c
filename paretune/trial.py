"""What an objective receives besides its assignments.

An objective is any importable `module:function(assignments: dict, context: TrialContext) ->
dict[str, float]`. It runs on a Dask worker, never touches the database, and hands per-epoch
values back through `context.report_checkpoint`; the flow stores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

CheckpointSink = Callable[[int, dict[str, float]], None]


def _discard(epoch: int, values: dict[str, float]) -> None:
    """Default sink for objectives run outside a flow (tests, notebooks)."""


@dataclass
class TrialContext:
    """Per-trial settings and the channel back to the flow.

    `settings` are the experiment's fixed, untuned knobs: `metadata.trial` of the spec (data
    paths, teacher, epochs, sequence lengths...). `artifact_dir` is a local folder or fsspec URL
    (``s3://bucket/prefix``) private to this trial.
    """

    suggestion_id: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    artifact_dir: str | None = None
    device: str = "cpu"
    checkpoint_sink: CheckpointSink = _discard
    checkpoints: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def report_checkpoint(self, epoch: int, values: dict[str, float]) -> None:
        """Record one epoch's values; non-finite numbers are refused here, at the source."""
        clean: dict[str, float] = {}
        for name, value in values.items():
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"checkpoint value {name}={value!r} at epoch {epoch} is not finite")
            clean[name] = number
        self.checkpoints.append((int(epoch), clean))
        self.checkpoint_sink(int(epoch), clean)

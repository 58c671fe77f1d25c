"""Why a trial produced no metrics: one vocabulary for every front end and report.

A failed observation carries a reason `"<kind>: <detail>"` (or just `"<kind>"`), and reports
count failures by kind, so the flow, ask/tell, the CLI and the runs API must all name the same
failure the same way: `Failure` is the only place reasons are written.

Objectives raise the `TrialFailure` types for failures that are information, not bugs: the
optimizer learns to avoid that region and the experiment goes on. They are deterministic, so
nothing retries them. This module imports nothing of paretune, so every layer (bert/, users'
objectives) can raise them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FailureKind(str, enum.Enum):
    ERROR = "error"  # the objective raised something unexpected: a bug, or a fault we do not classify
    OUT_OF_MEMORY = "out_of_memory"
    DIVERGED = "diverged"  # a NaN or infinite loss or metric
    INVALID_CONFIGURATION = "invalid_configuration"
    INVALID_METRICS = "invalid_metrics"  # the objective returned something that is not the experiment's metrics
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"  # the process running it died; it is not run again
    FAILED = "failed"  # reported failed by the caller, with no more specific kind


# Failures the search learns from (a region to avoid), not faults: logged as one warning line,
# their traceback at DEBUG only.
EXPECTED_KINDS = frozenset({FailureKind.OUT_OF_MEMORY, FailureKind.DIVERGED, FailureKind.INVALID_CONFIGURATION})


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    detail: str = ""

    @property
    def reason(self) -> str:
        """The text stored with the observation and the run."""
        return f"{self.kind.value}: {self.detail}" if self.detail else self.kind.value

    @property
    def expected(self) -> bool:
        return self.kind in EXPECTED_KINDS

    @classmethod
    def from_exception(cls, error: BaseException) -> Failure:
        if isinstance(error, TrialFailure):
            return cls(error.kind, error.reason)
        return cls(FailureKind.ERROR, f"{type(error).__name__}: {error}")

    @classmethod
    def from_reason(cls, text: str | None) -> Failure:
        """A caller's reason (`--reason out_of_memory`, `"timeout: 3 h"`, free text) in the vocabulary."""
        text = (text or "").strip()
        kind, separator, detail = text.partition(":")
        for known in FailureKind:
            if kind.strip() == known.value:
                return cls(known, detail.strip() if separator else "")
        return cls(FailureKind.FAILED, text)


class TrialFailure(Exception):
    """A configuration that cannot produce metrics; `reason` is stored with the observation."""

    kind = FailureKind.FAILED

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return Failure(self.kind, self.reason).reason


class OutOfMemory(TrialFailure):
    """The configuration does not fit in (GPU) memory, measured or estimated before training."""

    kind = FailureKind.OUT_OF_MEMORY


class Diverged(TrialFailure):
    """Training produced a NaN or infinite loss or metric."""

    kind = FailureKind.DIVERGED


class InvalidConfiguration(TrialFailure):
    """The assignments describe a model that cannot be built (e.g. heads do not divide hidden size)."""

    kind = FailureKind.INVALID_CONFIGURATION

"""Trial failures that are information, not bugs.

A trial that raises one of these becomes a *failed observation* carrying its reason: the
optimizer learns to avoid that region and the experiment goes on. They are deterministic, so
Prefect never retries them. Any other exception is a bug and surfaces with its traceback.
This module imports nothing, so every layer (bert/, tasks/, users' objectives) can raise them.
"""


class TrialFailure(Exception):
    """A configuration that cannot produce metrics; `reason` is stored with the observation."""

    kind = "failed"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


class OutOfMemory(TrialFailure):
    """The configuration does not fit in (GPU) memory, measured or estimated before training."""

    kind = "out_of_memory"


class Diverged(TrialFailure):
    """Training produced a NaN or infinite loss or metric."""

    kind = "diverged"


class InvalidConfiguration(TrialFailure):
    """The assignments describe a model that cannot be built (e.g. heads do not divide hidden size)."""

    kind = "invalid_configuration"

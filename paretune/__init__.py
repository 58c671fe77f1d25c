"""paretune: self-hosted multimetric hyperparameter and architecture search."""

from paretune.api import Experiment, Suggestion, create_experiment, open_experiment
from paretune.failures import Diverged, Failure, FailureKind, InvalidConfiguration, OutOfMemory, TrialFailure
from paretune.runs import Run, run
from paretune.trial import TrialContext
from paretune.storage import connect

__all__ = [
    "Diverged",
    "Experiment",
    "Failure",
    "FailureKind",
    "InvalidConfiguration",
    "OutOfMemory",
    "Run",
    "Suggestion",
    "TrialContext",
    "TrialFailure",
    "connect",
    "create_experiment",
    "open_experiment",
    "run",
]

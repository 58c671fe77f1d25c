"""paretune: self-hosted multimetric hyperparameter and architecture search."""

from paretune.api import Experiment, Suggestion, create_experiment, open_experiment
from paretune.failures import Diverged, InvalidConfiguration, OutOfMemory, TrialFailure
from paretune.runs import Run, run
from paretune.trial import TrialContext

__all__ = [
    "Diverged",
    "Experiment",
    "InvalidConfiguration",
    "OutOfMemory",
    "Run",
    "Suggestion",
    "TrialContext",
    "TrialFailure",
    "create_experiment",
    "open_experiment",
    "run",
]

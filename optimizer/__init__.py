"""The search algorithm: pure functions of (spec, history, pending), no I/O."""

from optimizer.observation import (
    Observation,
    ObservationError,
    validate_assignments,
    validate_history,
    validate_values,
)
from optimizer.spec import ExperimentSpec, Metric, Parameter, SpecError
from optimizer.suggest import suggest

__all__ = [
    "ExperimentSpec",
    "Metric",
    "Observation",
    "ObservationError",
    "Parameter",
    "SpecError",
    "suggest",
    "validate_assignments",
    "validate_history",
    "validate_values",
]

"""The search algorithm: pure functions of (spec, history, pending), no I/O."""

from optimizer.observation import (
    MetricValueError,
    Observation,
    ObservationError,
    metric_number,
    validate_assignments,
    validate_history,
    validate_values,
)
from optimizer.spec import ExperimentSpec, Metric, Parameter, SpecError
from optimizer.suggest import suggest

__all__ = [
    "ExperimentSpec",
    "Metric",
    "MetricValueError",
    "Observation",
    "ObservationError",
    "Parameter",
    "SpecError",
    "metric_number",
    "suggest",
    "validate_assignments",
    "validate_history",
    "validate_values",
]

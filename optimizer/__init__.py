"""The search algorithm: pure functions of (spec, history, pending), no I/O."""

from paretune.optimizer.observation import (
    MetricValueError,
    Observation,
    ObservationError,
    metric_number,
    validate_assignments,
    validate_history,
    validate_task,
    validate_value_stddevs,
    validate_values,
)
from paretune.optimizer.solutions import best_solutions
from paretune.optimizer.spec import ExperimentSpec, Metric, Parameter, SpecError
from paretune.optimizer.suggest import Proposal, propose, suggest

__all__ = [
    "ExperimentSpec",
    "Metric",
    "MetricValueError",
    "Observation",
    "ObservationError",
    "Parameter",
    "Proposal",
    "SpecError",
    "best_solutions",
    "metric_number",
    "propose",
    "suggest",
    "validate_assignments",
    "validate_history",
    "validate_task",
    "validate_value_stddevs",
    "validate_values",
]

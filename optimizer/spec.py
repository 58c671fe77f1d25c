"""SigOpt-shaped experiment definitions, validated once.

A SigOpt user's experiment dict loads unchanged. Every problem in a definition is reported at
once, each with its path (``parameters[2].bounds: min 5 >= max 1``), in one `SpecError`. The
definition's parts are in `optimizer.spec_fields`, the rules across them in
`optimizer.spec_checks`; their public names are imported here, where the code base has always
found them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, AliasChoices, BaseModel, Field, ValidationError, model_validator

from paretune.optimizer.spec_checks import (
    _cross_item_problems,
    _dedupe,
    _definition_problems,
    _describe,
    _feasible_point,
)
from paretune.optimizer.spec_fields import (
    CONSTRAINT_TOLERANCE,
    MAX_CHECKPOINTS,
    MAX_CONSTRAINT_METRICS,
    MAX_METRICS,
    MAX_NAME_LENGTH,
    MAX_OBSERVATION_BUDGET,
    MAX_OPTIMIZED_METRICS,
    MAX_PARALLEL_BANDWIDTH,
    _STRICT,
    BetaPrior,
    Bounds,
    CategoricalValue,
    Conditional,
    ConstraintTerm,
    Integer,
    LinearConstraint,
    Metric,
    Name,
    NormalPrior,
    Number,
    Parameter,
    ParetoEarlyStopping,
    SpecError,
    StoppingCriterion,
    Task,
    Text,
    TrainingMonitor,
    _not_an_id,
)

__all__ = [
    "CONSTRAINT_TOLERANCE", "MAX_CHECKPOINTS", "MAX_CONSTRAINT_METRICS", "MAX_METRICS", "MAX_NAME_LENGTH",
    "MAX_OBSERVATION_BUDGET", "MAX_OPTIMIZED_METRICS", "MAX_PARALLEL_BANDWIDTH", "BetaPrior", "Bounds",
    "CategoricalValue", "Conditional", "ConstraintTerm", "ExperimentSpec", "Integer", "LinearConstraint", "Metric",
    "Name", "NormalPrior", "Number", "Parameter", "ParetoEarlyStopping", "SpecError", "StoppingCriterion", "Task",
    "Text", "TrainingMonitor", "_feasible_point",
]


class ExperimentSpec(BaseModel):
    """A validated experiment definition (SigOpt's vocabulary)."""

    model_config = _STRICT

    name: Annotated[Name, AfterValidator(_not_an_id)]
    parameters: tuple[Parameter, ...]
    metrics: tuple[Metric, ...]
    observation_budget: Integer | None = Field(
        default=None, ge=1, le=MAX_OBSERVATION_BUDGET, validation_alias=AliasChoices("observation_budget", "budget")
    )
    parallel_bandwidth: Integer = Field(default=1, ge=1, le=MAX_PARALLEL_BANDWIDTH)
    metadata: dict[str, Any] | None = None
    project: Name | None = None
    # SigOpt's experiment type: "offline" (the default) is the model-based search; "random" is
    # random search, every suggestion a start-up draw (a baseline to measure the search against).
    type: Literal["offline", "random"] | None = None
    conditionals: tuple[Conditional, ...] | None = None
    linear_constraints: tuple[LinearConstraint, ...] | None = None
    tasks: tuple[Task, ...] | None = None
    num_solutions: Integer | None = Field(default=None, ge=1)
    training_monitor: TrainingMonitor | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _collect_every_problem(cls, data: Any, handler: Any) -> ExperimentSpec:
        """Run field validation and the cross-item rules together, so one error lists all."""
        if isinstance(data, ExperimentSpec):
            return data
        problems: list[str] = []
        if isinstance(data, dict):
            problems.extend(_cross_item_problems(data))
        try:
            spec = handler(data)
        except ValidationError as error:
            problems = _describe(error) + problems
            raise SpecError(_dedupe(problems)) from None
        if not problems:
            problems = _definition_problems(spec)
        if problems:
            raise SpecError(_dedupe(problems))
        return spec

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> ExperimentSpec:
        """Validate a definition; raise `SpecError` (one message, every problem) when invalid."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as error:
            for item in error.errors(include_url=False):
                cause = item.get("ctx", {}).get("error")
                if isinstance(cause, SpecError):
                    raise cause from None
            raise

    # -- loading and saving -------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentSpec:
        """Load a YAML or JSON definition (JSON is YAML, so one parser reads both)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SpecError([f"{path}: not a text file; a definition is YAML or JSON text"]) from None
        try:
            data = yaml.load(text, Loader=_Yaml12NumbersLoader)
        except yaml.YAMLError as error:
            raise SpecError([f"{path}: not valid YAML/JSON: {error}"]) from None
        if not isinstance(data, dict):
            raise SpecError([f"{path}: the definition must be a mapping with `name`, `parameters`, `metrics`"])
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        """The definition in SigOpt's shape, without unset optional keys (round-trips)."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {
            "name": self.name,
            "parameters": [_parameter_dict(p) for p in self.parameters],
            "metrics": [m.model_dump(mode="json", exclude_none=True) for m in self.metrics],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # -- views used across the code base ------------------------------------------------------
    @property
    def optimized_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.strategy == "optimize")

    @property
    def constraint_metrics(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.strategy == "constraint")

    @property
    def required_metrics(self) -> tuple[Metric, ...]:
        """Metrics a completed observation must report: every optimized and constraint one."""
        return tuple(m for m in self.metrics if m.strategy != "store")

    @property
    def tunable_parameters(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if p.tunable)

    @property
    def full_task(self) -> str | None:
        """The task of cost 1 (None without tasks): the frontier and "best" use only its observations."""
        return next((t.name for t in self.tasks or () if t.cost == 1), None)

    def task_cost(self, task: str | None) -> float:
        """What one observation of `task` spends of `observation_budget` (SigOpt counts budget in
        cost units: a full-task observation costs 1). None is the full task."""
        if task is None or not self.tasks:
            if task is not None:
                raise KeyError(f"the experiment has no tasks, got task {task!r}")
            return 1.0
        for candidate in self.tasks:
            if candidate.name == task:
                return candidate.cost
        raise KeyError(f"the experiment has no task {task!r} (known: {', '.join(t.name for t in self.tasks)})")

    @property
    def early_stopping(self) -> ParetoEarlyStopping | None:
        """`metadata.early_stopping`, validated when the definition was."""
        setting = (self.metadata or {}).get("early_stopping")
        return None if setting is None else ParetoEarlyStopping.model_validate(setting)

    @property
    def least_trial_cost(self) -> float:
        """The least one trial can spend of `observation_budget`: its cheapest task's cost, times
        the earliest share of `max_checkpoints` at which a stopping rule can end it (a convergence
        criterion after `max(min_checkpoints, lookback_checkpoints + 1)` checkpoints, Pareto early
        stopping at its first rung, `min_checkpoints`). Once less is left, no trial fits: the
        budget is spent, though what was observed may not add up to it."""
        cheapest = min((task.cost for task in self.tasks or ()), default=1.0)
        monitor = self.training_monitor
        if monitor is None:
            return cheapest
        earliest = [max(c.min_checkpoints, c.lookback_checkpoints + 1) for c in monitor.early_stopping_criteria]
        if self.early_stopping is not None:
            earliest.append(self.early_stopping.min_checkpoints)
        return cheapest * min([monitor.max_checkpoints, *earliest]) / monitor.max_checkpoints

    def is_full_cost(self, task: str | None) -> bool:
        return self.task_cost(task) == 1.0

    def active_parameters(self, conditionals: dict[str, Any]) -> tuple[Parameter, ...]:
        """The parameters whose conditions hold for these conditional values."""
        return tuple(p for p in self.parameters if p.active(conditionals))

    def constraints_hold(self, assignments: dict[str, Any]) -> bool:
        """True when `assignments` satisfy every linear constraint."""
        return all(constraint.holds(assignments) for constraint in self.linear_constraints or ())

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(f"the experiment has no parameter {name!r}")

    def metric(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"the experiment has no metric {name!r}")

    def meets_thresholds(self, values: dict[str, float]) -> bool:
        """True when every thresholded metric is present in `values` and meets its threshold."""
        return all(m.name in values and m.meets(values[m.name]) for m in self.metrics if m.threshold is not None)


class _Yaml12NumbersLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's floats: `1e-5` and `3E4` are numbers (PyYAML's YAML 1.1 reads them as text)."""


_Yaml12NumbersLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _parameter_dict(parameter: Parameter) -> dict[str, Any]:
    data = parameter.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"type": parameter.type}
    if parameter.type == "int" and parameter.bounds is not None:
        data["bounds"] = {"min": int(parameter.bounds.min), "max": int(parameter.bounds.max)}
    if parameter.type == "int" and parameter.grid is not None:
        data["grid"] = [int(value) for value in parameter.grid]
    return data

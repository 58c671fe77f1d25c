"""SigOpt-shaped experiment definitions, validated once.

A SigOpt user's experiment dict loads unchanged. Every problem in a definition is reported at
once, each with its path (``parameters[2].bounds: min 5 >= max 1``), in one `SpecError`.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic_core import PydanticCustomError
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_OPTIMIZED_METRICS = 2
MAX_CONSTRAINT_METRICS = 4
MAX_METRICS = 50
MAX_OBSERVATION_BUDGET = 100_000  # beyond this, a store of trials is no longer an experiment but a mistake
MAX_PARALLEL_BANDWIDTH = 1024
MAX_NAME_LENGTH = 200
MAX_CHECKPOINTS = 200  # SigOpt's limit on training_monitor.max_checkpoints
CONSTRAINT_TOLERANCE = 1e-9  # relative slack when checking a linear constraint (float rounding)

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


def _name_problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("name", message)


def _printable_name(name: str) -> str:
    """Names are shown in tables, logs and the UI: refuse what would garble them."""
    if not name.strip():
        raise _name_problem("must not be empty")
    if name != name.strip():
        raise _name_problem(f"{name!r} has spaces at its start or end")
    if not name.isprintable():
        raise _name_problem(f"{name!r} holds a control character (a newline, tab or terminal escape); use plain text")
    if len(name) > MAX_NAME_LENGTH:
        raise _name_problem(f"is {len(name)} characters long; at most {MAX_NAME_LENGTH}")
    return name


def _not_an_id(name: str) -> str:
    if name.isdigit():
        raise _name_problem(f"{name!r} is all digits, which reads as an experiment id; add a letter")
    return name


# Numbers must be numbers: YAML's "1e-5" (a string there) or "0.5" in quotes is refused, not guessed.
Number = Annotated[float, Strict()]
Integer = Annotated[int, Strict()]
Text = Annotated[str, Strict()]
Name = Annotated[str, Strict(), AfterValidator(_printable_name)]


class SpecError(ValueError):
    """An invalid experiment definition; `problems` lists each one as ``path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        count = len(problems)
        header = f"invalid experiment definition ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n  ".join([header, *problems]))


class Bounds(BaseModel):
    model_config = _STRICT
    min: Number
    max: Number


class CategoricalValue(BaseModel):
    """SigOpt's object form of a categorical value; `enum_index` is accepted and ignored."""

    model_config = _STRICT
    name: Name
    enum_index: Integer | None = None


def _names(values: Any) -> Any:
    """SigOpt's two forms of a list of names: ``[a, b]`` and ``[{name: a}, {name: b}]``."""
    if isinstance(values, (list, tuple)):
        return tuple(CategoricalValue.model_validate(v).name if isinstance(v, dict) else v for v in values)
    return values


class NormalPrior(BaseModel):
    """A normal prior belief about a double parameter, in the parameter's own units."""

    model_config = _STRICT
    name: Literal["normal"]
    mean: Number
    scale: Number = Field(gt=0)


class BetaPrior(BaseModel):
    """A beta prior over a double parameter's bounds (0 at `min`, 1 at `max`)."""

    model_config = _STRICT
    name: Literal["beta"]
    shape_a: Number = Field(gt=0)
    shape_b: Number = Field(gt=0)


class Conditional(BaseModel):
    """A switch the search sets (SigOpt's conditionals): parameters name it in `conditions`."""

    model_config = _STRICT
    name: Name
    values: tuple[Name, ...]

    _names_of_values = field_validator("values", mode="before")(_names)

    @model_validator(mode="after")
    def _check_values(self) -> Conditional:
        problems = []
        if len(self.values) < 2:
            problems.append("values: give at least two values")
        if len(set(self.values)) != len(self.values):
            problems.append("values: values must be distinct")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class ConstraintTerm(BaseModel):
    model_config = _STRICT
    name: Name
    weight: Number


class LinearConstraint(BaseModel):
    """``sum(weight * parameter) >= threshold`` (greater_than) or ``<= threshold`` (less_than)."""

    model_config = _STRICT
    type: Literal["greater_than", "less_than"]
    threshold: Number
    terms: tuple[ConstraintTerm, ...]

    def holds(self, assignments: dict[str, Any]) -> bool:
        total = sum(term.weight * float(assignments[term.name]) for term in self.terms)
        slack = CONSTRAINT_TOLERANCE * max(1.0, abs(self.threshold))
        return total >= self.threshold - slack if self.type == "greater_than" else total <= self.threshold + slack


class Task(BaseModel):
    """A cheaper fidelity of the objective (SigOpt's multitask): `cost` relative to the full task's 1."""

    model_config = _STRICT
    name: Name
    cost: Number = Field(gt=0, le=1)


class StoppingCriterion(BaseModel):
    """SigOpt's convergence criterion: stop once `metric` has not improved over the last
    `lookback_checkpoints` checkpoints, never before `min_checkpoints` (paretune.stopping)."""

    model_config = _STRICT
    type: Literal["convergence"]
    name: Name
    metric: Name
    lookback_checkpoints: Integer = Field(ge=1, le=MAX_CHECKPOINTS)
    min_checkpoints: Integer = Field(default=1, ge=1, le=MAX_CHECKPOINTS)


class TrainingMonitor(BaseModel):
    """SigOpt's training monitor: at most `max_checkpoints` per trial, and when to stop earlier."""

    model_config = _STRICT
    max_checkpoints: Integer = Field(ge=1, le=MAX_CHECKPOINTS)
    early_stopping_criteria: tuple[StoppingCriterion, ...] = ()


class ParetoEarlyStopping(BaseModel):
    """`metadata.early_stopping`: paretune's Pareto rung rule (paretune.stopping), opted into
    inside SigOpt's free-form metadata so the definition stays a valid SigOpt one."""

    model_config = _STRICT
    type: Literal["pareto"]
    reduction_factor: Integer = Field(default=3, ge=2, le=100)
    min_checkpoints: Integer = Field(default=1, ge=1, le=MAX_CHECKPOINTS)


class _EarlyStoppingMetadata(BaseModel):
    """Validates `metadata.early_stopping` with its path, beside SigOpt's free-form metadata."""

    early_stopping: ParetoEarlyStopping


class Parameter(BaseModel):
    model_config = _STRICT

    name: Name
    type: Literal["double", "int", "categorical"]
    bounds: Bounds | None = None
    categorical_values: tuple[Name, ...] | None = None
    transformation: Literal["log", "none"] | None = None
    default_value: Integer | Number | Text | None = None
    precision: Integer | None = Field(default=None, ge=1)
    tunable: Annotated[bool, Strict()] = True
    grid: tuple[Number, ...] | None = None
    prior: NormalPrior | BetaPrior | None = Field(default=None, discriminator="name")
    conditions: dict[Name, tuple[Name, ...]] | None = None

    _names_of_categorical_values = field_validator("categorical_values", mode="before")(_names)

    @field_validator("conditions", mode="before")
    @classmethod
    def _one_value_or_many(cls, conditions: Any) -> Any:
        """SigOpt takes a single value or a list per conditional: ``{attention: multi_head}``."""
        if isinstance(conditions, dict):
            return {name: (values,) if isinstance(values, str) else values for name, values in conditions.items()}
        return conditions

    @model_validator(mode="after")
    def _check_domain(self) -> Parameter:
        problems = []
        if self.type == "categorical":
            if self.bounds is not None:
                problems.append("bounds: a categorical parameter takes `categorical_values`, not `bounds`")
            values = self.categorical_values or ()
            if len(values) < 2:
                problems.append("categorical_values: give at least two values")
            if len(set(values)) != len(values):
                problems.append("categorical_values: values must be distinct")
            if self.transformation == "log":
                problems.append("transformation: `log` applies to double parameters only")
            if self.default_value is not None and self.default_value not in values:
                problems.append(f"default_value: {self.default_value!r} is not one of categorical_values")
            if self.grid is not None:
                problems.append("grid: a categorical parameter takes `categorical_values`, not `grid`")
            if self.prior is not None:
                problems.append("prior: priors apply to double parameters only")
        else:
            if self.categorical_values is not None:
                problems.append(f"categorical_values: a {self.type} parameter takes `bounds`")
            if self.grid is not None:
                problems.extend(self._grid_problems(self.grid))
            if self.bounds is None and self.grid is None:
                problems.append("bounds: required for a double or int parameter, e.g. {min: 0, max: 1} (or give a `grid`)")
            elif not problems:
                problems.extend(self._bounds_problems(Bounds(min=self.low, max=self.high)))
            if self.prior is not None and not problems:
                problems.extend(self._prior_problems(self.prior))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _grid_problems(self, grid: tuple[float, ...]) -> list[str]:
        problems = []
        if len(grid) < 2:
            problems.append("grid: give at least two values")
        if len(set(grid)) != len(grid):
            problems.append("grid: values must be distinct")
        if self.type == "int" and not all(float(v).is_integer() for v in grid):
            problems.append("grid: an int parameter takes whole numbers")
        if self.bounds is not None:
            outside = [v for v in grid if not (self.bounds.min <= v <= self.bounds.max)]
            if outside:
                problems.append(f"grid: {_fmt(outside[0])} is outside bounds {_fmt(self.bounds.min)}..{_fmt(self.bounds.max)}")
        if self.default_value is not None and not isinstance(self.default_value, str) and self.default_value not in grid:
            problems.append(f"default_value: {_fmt(self.default_value)} is not one of the grid values")
        return problems

    def _prior_problems(self, prior: NormalPrior | BetaPrior) -> list[str]:
        if self.type != "double":
            return ["prior: priors apply to double parameters only"]
        if self.grid is not None:
            return ["prior: a grid parameter takes no prior"]
        if self.is_log:
            return ["prior: a log-transformed parameter takes no prior (SigOpt's rule); drop one of them"]
        if isinstance(prior, NormalPrior) and not (self.low <= prior.mean <= self.high):
            return [f"prior.mean: {_fmt(prior.mean)} is outside bounds {_fmt(self.low)}..{_fmt(self.high)}"]
        return []

    def _bounds_problems(self, bounds: Bounds) -> list[str]:
        low, high = bounds.min, bounds.max
        problems = []
        if low >= high:
            problems.append(f"bounds: min {_fmt(low)} >= max {_fmt(high)}; min must be below max")
        if self.type == "int":
            if not (low.is_integer() and high.is_integer()):
                problems.append(f"bounds: an int parameter needs whole-number bounds, got {_fmt(low)}..{_fmt(high)}")
            if self.transformation == "log":
                problems.append("transformation: `log` applies to double parameters only")
        if self.transformation == "log" and self.type == "double" and low <= 0:
            problems.append(f"bounds: log transformation needs min > 0, got {_fmt(low)}")
        default = self.default_value
        if default is not None:
            if isinstance(default, str) or isinstance(default, bool):
                problems.append(f"default_value: {default!r} is not a number")
            elif not (low <= default <= high):
                problems.append(f"default_value: {_fmt(default)} is outside bounds {_fmt(low)}..{_fmt(high)}")
            elif self.type == "int" and not float(default).is_integer():
                problems.append(f"default_value: {_fmt(default)} is not a whole number")
        return problems

    @property
    def is_log(self) -> bool:
        return self.transformation == "log"

    @property
    def low(self) -> float:
        """The smallest value: `bounds.min`, or the smallest grid value."""
        return self.bounds.min if self.bounds is not None else min(self.grid or (0.0,))

    @property
    def high(self) -> float:
        return self.bounds.max if self.bounds is not None else max(self.grid or (0.0,))

    def active(self, assignments: dict[str, Any]) -> bool:
        """True when every condition holds for the conditionals' values in `assignments`."""
        return all(assignments.get(name) in values for name, values in (self.conditions or {}).items())

    def coerce(self, value: Any) -> float | int | str:
        """Return `value` as this parameter's Python type, or raise ValueError saying why not."""
        if self.type == "categorical":
            if value not in (self.categorical_values or ()):
                raise ValueError(f"{value!r} is not one of {list(self.categorical_values or ())}")
            return str(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not finite")
        if self.grid is not None and number not in self.grid:
            raise ValueError(f"{_fmt(number)} is not one of the grid values {[_fmt(v) for v in self.grid]}")
        if not (self.low <= number <= self.high):
            raise ValueError(f"{_fmt(number)} is outside bounds {_fmt(self.low)}..{_fmt(self.high)}")
        if self.type == "int":
            if not number.is_integer():
                raise ValueError(f"{_fmt(number)} is not a whole number")
            return int(number)
        return number


class Metric(BaseModel):
    model_config = _STRICT

    name: Name
    objective: Literal["maximize", "minimize"] = "maximize"
    strategy: Literal["optimize", "constraint", "store"] = "optimize"
    threshold: Number | None = None

    @model_validator(mode="after")
    def _check_threshold(self) -> Metric:
        problems = []
        if self.strategy == "store" and self.threshold is not None:
            problems.append("threshold: a `store` metric is only recorded; drop its threshold or make it a constraint")
        if self.strategy == "constraint" and self.threshold is None:
            problems.append("threshold: a `constraint` metric needs a threshold (the bound it must meet)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def meets(self, value: float) -> bool:
        """True when `value` satisfies this metric's threshold (or it has none)."""
        if self.threshold is None:
            return True
        return value >= self.threshold if self.objective == "maximize" else value <= self.threshold


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


def _definition_problems(spec: ExperimentSpec) -> list[str]:
    """Rules that relate fields to each other (SigOpt's, as sigoptlite checks them)."""
    problems = _conditional_problems(spec) + _constraint_problems(spec) + _training_monitor_problems(spec)
    tasks = spec.tasks or ()
    if spec.tasks is not None:
        if len(tasks) < 2:
            problems.append("tasks: give at least two tasks (one of them the full task, cost 1)")
        if len({t.name for t in tasks}) != len(tasks):
            problems.append("tasks: task names must be distinct")
        if len({t.cost for t in tasks}) != len(tasks):
            problems.append("tasks: task costs must be distinct")
        if sum(t.cost == 1 for t in tasks) != 1:
            problems.append("tasks: exactly one task must have cost 1 (the full task)")
    if spec.num_solutions is not None and spec.num_solutions > 1:
        if len(spec.optimized_metrics) != 1:
            problems.append("num_solutions: more than one solution needs exactly one optimized metric")
        if spec.observation_budget is not None and spec.num_solutions > spec.observation_budget:
            problems.append(f"num_solutions: {spec.num_solutions} is more than observation_budget "
                            f"{spec.observation_budget}")
    return problems


def _conditional_problems(spec: ExperimentSpec) -> list[str]:
    conditionals = {c.name: c for c in spec.conditionals or ()}
    problems = _duplicate_names("conditionals", [{"name": c.name} for c in spec.conditionals or ()])
    parameter_names = {p.name for p in spec.parameters}
    for index, conditional in enumerate(spec.conditionals or ()):
        if conditional.name in parameter_names:
            problems.append(f"conditionals[{index}].name: {conditional.name!r} is also a parameter's name")
    for index, parameter in enumerate(spec.parameters):
        for name, values in (parameter.conditions or {}).items():
            path = f"parameters[{index}].conditions.{name}"
            if name not in conditionals:
                known = ", ".join(conditionals) or "none defined; add them under `conditionals`"
                problems.append(f"{path}: no conditional named {name!r} (conditionals: {known})")
                continue
            for value in values:
                if value not in conditionals[name].values:
                    problems.append(f"{path}: {value!r} is not a value of conditional {name!r} "
                                    f"({', '.join(conditionals[name].values)})")
    if problems or not conditionals:
        return problems
    for combination in itertools.product(*(c.values for c in conditionals.values())):
        setting = dict(zip(conditionals, combination))
        if not spec.active_parameters(setting):
            problems.append(f"conditionals: no parameter is active when {setting}; every combination of "
                            "conditional values needs at least one")
            break
    return problems


def _constraint_problems(spec: ExperimentSpec) -> list[str]:
    problems = []
    by_name = {p.name: p for p in spec.parameters}
    for index, constraint in enumerate(spec.linear_constraints or ()):
        path = f"linear_constraints[{index}]"
        names = [term.name for term in constraint.terms]
        if len(names) < 2:
            problems.append(f"{path}.terms: give at least two terms (a bound on one parameter belongs in its `bounds`)")
        if len(set(names)) != len(names):
            problems.append(f"{path}.terms: a parameter appears twice")
        kinds = set()
        for term_index, name in enumerate(names):
            parameter = by_name.get(name)
            where = f"{path}.terms[{term_index}].name"
            if parameter is None:
                problems.append(f"{where}: no parameter named {name!r}")
            elif parameter.type == "categorical":
                problems.append(f"{where}: {name!r} is categorical; constraints take double or int parameters")
            elif parameter.conditions:
                problems.append(f"{where}: {name!r} has conditions; constraints take unconditional parameters")
            elif parameter.is_log or parameter.grid is not None:
                problems.append(f"{where}: {name!r} is {'log-transformed' if parameter.is_log else 'a grid'}; "
                                "constraints take linear, bounded parameters")
            elif not parameter.tunable:
                problems.append(f"{where}: {name!r} is not tunable")
            else:
                kinds.add(parameter.type)
        if len(kinds) > 1:
            problems.append(f"{path}.terms: mixes int and double parameters (SigOpt's rule: one type per constraint)")
    if problems or not spec.linear_constraints:
        return problems
    if _feasible_point(spec) is None:
        problems.append("linear_constraints: infeasible: no assignment within the parameters' bounds satisfies "
                        "every constraint together; loosen a threshold or widen a bound")
    defaults = {p.name: p.default_value for p in spec.parameters if p.default_value is not None}
    for index, constraint in enumerate(spec.linear_constraints):
        if all(term.name in defaults for term in constraint.terms) and not constraint.holds(defaults):
            problems.append(f"linear_constraints[{index}]: the parameters' default_values violate it")
    return problems


def _training_monitor_problems(spec: ExperimentSpec) -> list[str]:
    """The criteria name the experiment's metrics; Pareto early stopping needs a trial's length."""
    monitor = spec.training_monitor
    criteria = monitor.early_stopping_criteria if monitor else ()
    problems = _duplicate_names("training_monitor.early_stopping_criteria", [{"name": c.name} for c in criteria])
    metrics = [m.name for m in spec.metrics]
    for index, criterion in enumerate(criteria):
        path = f"training_monitor.early_stopping_criteria[{index}]"
        if criterion.metric not in metrics:
            problems.append(f"{path}.metric: no metric named {criterion.metric!r} (metrics: {', '.join(metrics)})")
        if criterion.min_checkpoints > monitor.max_checkpoints:  # type: ignore[union-attr]
            problems.append(f"{path}.min_checkpoints: {criterion.min_checkpoints} is more than "
                            f"training_monitor.max_checkpoints {monitor.max_checkpoints}")  # type: ignore[union-attr]
    setting = (spec.metadata or {}).get("early_stopping")
    if setting is None:
        return problems
    try:
        stopping = _EarlyStoppingMetadata.model_validate({"early_stopping": setting}).early_stopping
    except ValidationError as error:
        return problems + [f"metadata.{line}" for line in _describe(error)]
    if monitor is None:
        problems.append("metadata.early_stopping: needs `training_monitor: {max_checkpoints: N}` (the checkpoints "
                        "a trial reports when it trains to the end)")
    elif stopping.min_checkpoints >= monitor.max_checkpoints:
        problems.append(f"metadata.early_stopping.min_checkpoints: {stopping.min_checkpoints} leaves no rung before "
                        f"training_monitor.max_checkpoints {monitor.max_checkpoints}; make it smaller")
    return problems


def _feasible_point(spec: ExperimentSpec) -> dict[str, float] | None:
    """A point of the constrained parameters satisfying every constraint (integral where the
    parameters are ints), by linear programming; None when there is none."""
    from scipy.optimize import linprog

    names = sorted({term.name for c in spec.linear_constraints or () for term in c.terms})
    parameters = [spec.parameter(name) for name in names]
    matrix, limits = [], []
    for constraint in spec.linear_constraints or ():
        sign = -1.0 if constraint.type == "greater_than" else 1.0  # as A x <= b
        weights = {term.name: term.weight for term in constraint.terms}
        matrix.append([sign * weights.get(name, 0.0) for name in names])
        limits.append(sign * constraint.threshold)
    result = linprog(np.zeros(len(names)), A_ub=np.array(matrix), b_ub=np.array(limits),
                     bounds=[(p.low, p.high) for p in parameters],
                     integrality=[1 if p.type == "int" else 0 for p in parameters], method="highs")
    return dict(zip(names, result.x)) if result.status == 0 else None


def _parameter_dict(parameter: Parameter) -> dict[str, Any]:
    data = parameter.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"type": parameter.type}
    if parameter.type == "int" and parameter.bounds is not None:
        data["bounds"] = {"min": int(parameter.bounds.min), "max": int(parameter.bounds.max)}
    if parameter.type == "int" and parameter.grid is not None:
        data["grid"] = [int(value) for value in parameter.grid]
    return data


def _cross_item_problems(data: dict[str, Any]) -> list[str]:
    """Rules across list items, checked on the raw input so they show beside field errors."""
    problems = []
    parameters = data.get("parameters")
    if isinstance(parameters, (list, tuple)):
        if not parameters:
            problems.append("parameters: give at least one parameter")
        problems.extend(_duplicate_names("parameters", parameters))
    metrics = data.get("metrics")
    if isinstance(metrics, (list, tuple)):
        problems.extend(_duplicate_names("metrics", metrics))
        strategies = [m.get("strategy", "optimize") for m in metrics if isinstance(m, dict)]
        optimized = strategies.count("optimize")
        constraints = strategies.count("constraint")
        if optimized == 0:
            problems.append("metrics: give at least one metric with `strategy: optimize`")
        if optimized > MAX_OPTIMIZED_METRICS:
            problems.append(f"metrics: {optimized} metrics have `strategy: optimize`; at most {MAX_OPTIMIZED_METRICS} may "
                            "(make the others `constraint` or `store`)")
        if constraints > MAX_CONSTRAINT_METRICS:
            problems.append(f"metrics: {constraints} constraint metrics; at most {MAX_CONSTRAINT_METRICS} may be constraints")
        if len(metrics) > MAX_METRICS:
            problems.append(f"metrics: {len(metrics)} metrics; at most {MAX_METRICS}")
    return problems


def _duplicate_names(field: str, items: list[Any] | tuple[Any, ...]) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{field}[{index}].name: {name!r} is already used by {field}[{seen[name]}]")
            else:
                seen[name] = index
    return problems


_KNOWN_KEYS = {
    (): set(ExperimentSpec.model_fields) | {"budget"},
    ("parameters",): set(Parameter.model_fields),
    ("bounds",): set(Bounds.model_fields),
    ("metrics",): set(Metric.model_fields),
    ("conditionals",): set(Conditional.model_fields),
    ("linear_constraints",): set(LinearConstraint.model_fields),
    ("terms",): set(ConstraintTerm.model_fields),
    ("tasks",): set(Task.model_fields),
    ("prior",): set(NormalPrior.model_fields) | set(BetaPrior.model_fields),
    ("training_monitor",): set(TrainingMonitor.model_fields),
    ("early_stopping_criteria",): set(StoppingCriterion.model_fields),
    ("early_stopping",): set(ParetoEarlyStopping.model_fields),
}


def _describe(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into ``path: message`` lines a person can act on."""
    lines = []
    for item in error.errors(include_url=False):
        location = [part for index, part in enumerate(item["loc"]) if not _is_union_branch(part)
                    and not (index and item["loc"][index - 1] == "prior" and part in ("normal", "beta"))]
        path = _path(location)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(location[-1])
            parent = tuple(p for p in location[:-1] if isinstance(p, str))[-1:]
            known = _KNOWN_KEYS.get(parent, set())
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f"; known keys: {', '.join(sorted(known))}" if known else ""
            lines.append(f"{path}: unknown key{hint}")
        elif kind == "name":
            lines.append(f"{path}: {item['msg']}")
        elif kind in ("float_type", "int_type") and isinstance(item["input"], str):
            lines.append(f"{path}: {item['input']!r} is text, not a number; write it without quotes")
        elif kind == "finite_number":
            lines.append(f"{path}: must be a finite number, got {item['input']!r}")
        elif kind == "value_error":
            message = str(item["ctx"]["error"]) if "ctx" in item else item["msg"]
            for part in message.split("\n"):
                sub, _, text = part.partition(": ")
                lines.append(f"{path}.{sub}: {text}" if text and path else part)
        elif kind == "missing":
            lines.append(f"{path}: required")
        else:
            lines.append(f"{path}: {item['msg']}")
    return lines


def _is_union_branch(part: Any) -> bool:
    return isinstance(part, str) and (part in {"float", "int", "str", "function-after[_check_domain()]"}
                                      or part.startswith(("function-", "literal[", "tuple[", "list[")))


def _path(location: list[Any]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _dedupe(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _fmt(number: float) -> str:
    return f"{int(number)}" if float(number).is_integer() else f"{number:g}"

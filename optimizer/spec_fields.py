"""The parts of a SigOpt-shaped experiment definition: parameters, metrics, bounds, priors,
conditionals, linear constraints, tasks and the training monitor, each a strict pydantic model
that checks its own fields (`optimizer.spec` holds the whole definition; `optimizer.spec_checks`
the rules across fields and the error messages)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic_core import PydanticCustomError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
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


def _fmt(number: float) -> str:
    return f"{int(number)}" if float(number).is_integer() else f"{number:g}"

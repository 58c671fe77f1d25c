"""SigOpt-shaped experiment definitions, validated once.

A SigOpt user's experiment dict loads unchanged. Every problem in a definition is reported at
once, each with its path (``parameters[2].bounds: min 5 >= max 1``), in one `SpecError`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

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

# SigOpt features a definition may carry that paretune does not implement: refused by name
# rather than silently ignored, so a user never believes they are in effect.
UNSUPPORTED_SIGOPT_KEYS = {
    "conditions": "conditional parameters are not supported; drop `conditions`",
    "conditionals": "conditional parameters are not supported; drop `conditionals`",
    "linear_constraints": "linear parameter constraints are not supported; drop `linear_constraints`",
    "grid": "grid values are not supported; use `bounds` or `categorical_values`",
    "prior": "parameter priors are not supported; drop `prior`",
    "num_solutions": "`num_solutions` is not supported; multimetric experiments return the Pareto frontier",
}

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

    @field_validator("categorical_values", mode="before")
    @classmethod
    def _names_of_categorical_values(cls, values: Any) -> Any:
        """Accept both SigOpt forms: ``[adamw, sgd]`` and ``[{name: adamw}, {name: sgd}]``."""
        if isinstance(values, (list, tuple)):
            return tuple(
                CategoricalValue.model_validate(v).name if isinstance(v, dict) else v for v in values
            )
        return values

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
        else:
            if self.categorical_values is not None:
                problems.append(f"categorical_values: a {self.type} parameter takes `bounds`")
            if self.bounds is None:
                problems.append("bounds: required for a double or int parameter, e.g. {min: 0, max: 1}")
            else:
                problems.extend(self._bounds_problems(self.bounds))
        if problems:
            raise ValueError("\n".join(problems))
        return self

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
        assert self.bounds is not None
        if not (self.bounds.min <= number <= self.bounds.max):
            raise ValueError(f"{_fmt(number)} is outside bounds {_fmt(self.bounds.min)}..{_fmt(self.bounds.max)}")
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
    return data


def _cross_item_problems(data: dict[str, Any]) -> list[str]:
    """Rules across list items, checked on the raw input so they show beside field errors."""
    problems = []
    for key in sorted(set(data) & set(UNSUPPORTED_SIGOPT_KEYS)):
        problems.append(f"{key}: {UNSUPPORTED_SIGOPT_KEYS[key]}")
    parameters = data.get("parameters")
    if isinstance(parameters, (list, tuple)):
        if not parameters:
            problems.append("parameters: give at least one parameter")
        problems.extend(_duplicate_names("parameters", parameters))
        for index, parameter in enumerate(parameters):
            if isinstance(parameter, dict):
                for key in sorted(set(parameter) & set(UNSUPPORTED_SIGOPT_KEYS)):
                    problems.append(f"parameters[{index}].{key}: {UNSUPPORTED_SIGOPT_KEYS[key]}")
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
}


def _describe(error: ValidationError) -> list[str]:
    """Turn pydantic's errors into ``path: message`` lines a person can act on."""
    lines = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not _is_union_branch(part)]
        path = _path(location)
        kind = item["type"]
        if kind == "extra_forbidden":
            key = str(location[-1])
            if key in UNSUPPORTED_SIGOPT_KEYS:
                continue  # reported with its own explanation by _cross_item_problems
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

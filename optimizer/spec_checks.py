"""Rules across the fields of an experiment definition (SigOpt's, as sigoptlite checks them),
and pydantic's errors turned into ``path: message`` lines a person can act on."""

from __future__ import annotations

import difflib
import functools
import itertools
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from paretune.optimizer.spec_fields import (
    MAX_CONSTRAINT_METRICS,
    MAX_METRICS,
    MAX_OPTIMIZED_METRICS,
    BetaPrior,
    Bounds,
    Conditional,
    ConstraintTerm,
    LinearConstraint,
    Metric,
    NormalPrior,
    Parameter,
    ParetoEarlyStopping,
    StoppingCriterion,
    Task,
    TrainingMonitor,
    _EarlyStoppingMetadata,
)

if TYPE_CHECKING:
    from paretune.optimizer.spec import ExperimentSpec


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


@functools.cache
def _known_keys() -> dict[tuple[str, ...], set[str]]:
    """The keys each part of a definition accepts, for "did you mean" hints."""
    from paretune.optimizer.spec import ExperimentSpec

    return {
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
            known = _known_keys().get(parent, set())
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

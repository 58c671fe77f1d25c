"""SigOpt's definition keys in the optimizer: conditionals, linear constraints, priors, grids,
reported noise, tasks and num_solutions. Accepted in SigOpt's shapes, refused with the field
named, and used by the search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paretune.optimizer import (
    ExperimentSpec,
    Observation,
    ObservationError,
    SpecError,
    best_solutions,
    propose,
    suggest,
    validate_assignments,
    validate_task,
    validate_value_stddevs,
)
from paretune.optimizer.pareto import hypervolume_2d

BASE = {"name": "keys", "metrics": [{"name": "y", "objective": "minimize"}]}


def spec_of(**definition) -> ExperimentSpec:
    return ExperimentSpec.model_validate(BASE | definition)


def problems_of(**definition) -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec_of(**definition)
    return caught.value.problems


def double(name, low=0.0, high=1.0, **extra):
    return {"name": name, "type": "double", "bounds": {"min": low, "max": high}} | extra


# -- accepted shapes ------------------------------------------------------------------------------

def test_sigopt_shapes_load_and_round_trip():
    definition = {
        "conditionals": [{"name": "attention", "values": [{"name": "single"}, {"name": "multi_head"}]}],
        "parameters": [
            {"name": "n_heads", "type": "int", "bounds": {"min": 1, "max": 12}, "conditions": {"attention": "multi_head"}},
            double("lr", prior={"name": "normal", "mean": 0.3, "scale": 0.1}),
            double("wd", prior={"name": "beta", "shape_a": 2, "shape_b": 5}),
            {"name": "batch", "type": "int", "grid": [8, 16, 64]},
            double("a"), double("b"),
        ],
        "linear_constraints": [{"type": "less_than", "threshold": 1.0,
                                "terms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 2}]}],
        "tasks": [{"name": "cheap", "cost": 0.1}, {"name": "full", "cost": 1}],
        "num_solutions": 1, "project": "bert", "metadata": {"owner": "me"},
    }
    spec = spec_of(**definition)
    assert spec.parameter("n_heads").conditions == {"attention": ("multi_head",)}
    assert spec.conditionals[0].values == ("single", "multi_head")
    assert spec.task_cost("cheap") == 0.1 and spec.task_cost("full") == 1.0 and spec.full_task == "full"
    assert ExperimentSpec.model_validate(spec.to_dict()) == spec


@pytest.mark.parametrize(("definition", "expected"), [
    ({"parameters": [double("x", conditions={"arch": ["a"]})]}, "parameters[0].conditions.arch: no conditional named 'arch'"),
    ({"conditionals": [{"name": "arch", "values": ["a", "b"]}],
      "parameters": [double("x", conditions={"arch": ["c"]}), double("z")]},
     "parameters[0].conditions.arch: 'c' is not a value of conditional 'arch'"),
    ({"parameters": [double("a"), double("b")],
      "linear_constraints": [{"type": "greater_than", "threshold": 2.5,
                              "terms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}]},
     "linear_constraints: infeasible"),
    ({"parameters": [double("a"), double("b")],
      "linear_constraints": [{"type": "less_than", "threshold": 1, "terms": [{"name": "a", "weight": 1},
                                                                             {"name": "c", "weight": 1}]}]},
     "linear_constraints[0].terms[1].name: no parameter named 'c'"),
    ({"parameters": [double("a", prior={"name": "normal", "mean": 2.0, "scale": 0.1})]},
     "parameters[0].prior.mean: 2 is outside bounds 0..1"),
    ({"parameters": [double("a", prior={"name": "beta", "shape_a": -1, "shape_b": 1})]}, "parameters[0].prior"),
    ({"parameters": [{"name": "n", "type": "int", "bounds": {"min": 1, "max": 8}, "grid": [1, 4, 16]}]},
     "parameters[0].grid: 16 is outside bounds 1..8"),
    ({"parameters": [double("a")], "tasks": [{"name": "cheap", "cost": 0.2}, {"name": "mid", "cost": 0.5}]},
     "tasks: exactly one task must have cost 1"),
])
def test_invalid_keys_are_refused_naming_the_field(definition, expected):
    problems = problems_of(**definition)
    assert any(p.startswith(expected) for p in problems), problems


def test_observation_checks_name_the_field():
    spec = spec_of(conditionals=[{"name": "arch", "values": ["a", "b"]}],
                   parameters=[double("x", conditions={"arch": "a"}), double("z")],
                   tasks=[{"name": "cheap", "cost": 0.5}, {"name": "full", "cost": 1}])
    assert validate_assignments(spec, {"arch": "b", "z": 0.5}) == {"arch": "b", "z": 0.5}
    with pytest.raises(ObservationError, match="assignments.x: inactive"):
        validate_assignments(spec, {"arch": "b", "x": 0.1, "z": 0.5})
    with pytest.raises(ObservationError, match="assignments.arch: 'c' is not a value"):
        validate_assignments(spec, {"arch": "c", "z": 0.5})
    with pytest.raises(ObservationError, match="assignments.x: missing"):
        validate_assignments(spec, {"arch": "a", "z": 0.5})
    with pytest.raises(ObservationError, match="value_stddevs.y: -0.1 is negative"):
        validate_value_stddevs(spec, {"y": -0.1}, {"y": 1.0})
    with pytest.raises(ObservationError, match="value_stddevs.y: inf is not finite"):
        validate_value_stddevs(spec, {"y": math.inf}, {"y": 1.0})
    with pytest.raises(ObservationError, match="task: 'huge' is not a task"):
        validate_task(spec, "huge")
    with pytest.raises(ObservationError, match="task: missing"):
        validate_task(spec, None)


def test_default_values_of_every_type_come_first():
    spec = spec_of(parameters=[double("x", default_value=0.25), {"name": "n", "type": "int", "grid": [2, 4, 8],
                                                                "default_value": 4},
                               {"name": "k", "type": "categorical", "categorical_values": ["p", "q"], "default_value": "q"}])
    [first] = suggest(spec, [], [], seed=3)
    assert (first["x"], first["n"], first["k"]) == (0.25, 4, "q")


def test_a_default_under_a_condition_comes_first_with_its_branch():
    spec = spec_of(conditionals=[{"name": "arch", "values": ["plain", "gated"]}],
                   parameters=[double("gate", default_value=0.25, conditions={"arch": "gated"}), double("x")])
    for seed in range(5):
        [first] = suggest(spec, [], [], seed=seed)
        assert (first["arch"], first["gate"]) == ("gated", 0.25)


# -- properties over random specs -----------------------------------------------------------------

@st.composite
def random_specs(draw):
    n_doubles = draw(st.integers(2, 4))
    parameters = [double(f"d{i}", 0.0, draw(st.sampled_from([1.0, 5.0]))) for i in range(n_doubles)]
    parameters.append({"name": "g", "type": "double", "grid": sorted(draw(st.sets(
        st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0]), min_size=2, max_size=4)))})
    parameters.append({"name": "n", "type": "int", "bounds": {"min": 1, "max": 6},
                       "conditions": {"branch": ["deep"]}})
    parameters.append({"name": "k", "type": "categorical", "categorical_values": ["u", "v", "w"],
                       "conditions": {"branch": ["wide", "deep"]}})
    terms = [{"name": f"d{i}", "weight": draw(st.sampled_from([1.0, 2.0, -1.0]))}
             for i in draw(st.sets(st.integers(0, n_doubles - 1), min_size=2, max_size=n_doubles))]
    lower = draw(st.booleans())
    threshold = draw(st.sampled_from([0.3, 0.8, 1.5]))
    constraints = [{"type": "less_than" if lower else "greater_than", "threshold": threshold if lower else -threshold,
                    "terms": terms}]
    return ExperimentSpec.model_validate({
        "name": "random", "parameters": parameters, "linear_constraints": constraints,
        "conditionals": [{"name": "branch", "values": ["shallow", "wide", "deep"]}],
        "metrics": [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize"}]})


def synthetic(assignments: dict) -> dict[str, float]:
    doubles = [v for k, v in assignments.items() if k.startswith("d")]
    return {"f1": float(doubles[0] + 0.1 * assignments.get("n", 0)),
            "f2": float(sum((v - 0.3) ** 2 for v in doubles[1:]) + assignments["g"] - doubles[0])}


def check_suggestion(spec: ExperimentSpec, assignments: dict) -> None:
    validate_assignments(spec, assignments)  # conditionals present, inactive parameters absent, in bounds
    assert spec.constraints_hold(assignments), assignments
    assert assignments["g"] in spec.parameter("g").grid
    assert ("n" in assignments) == (assignments["branch"] == "deep")
    assert ("k" in assignments) == (assignments["branch"] != "shallow")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), seed=st.integers(0, 2**16))
def test_every_suggestion_keeps_constraints_grids_and_conditions(spec, seed):
    history: list[Observation] = []
    for step in range(14):  # through start-up into the model-based step
        [assignments] = suggest(spec, history, [], 1, seed=seed + step, n_startup=8)
        check_suggestion(spec, assignments)
        history.append(Observation(assignments=assignments, values=synthetic(assignments)))
    pending = suggest(spec, history, [], 2, seed=seed, n_startup=8)
    batch = suggest(spec, history, pending, 3, seed=seed, n_startup=8)
    for assignments in pending + batch:
        check_suggestion(spec, assignments)
    assert batch == suggest(spec, history, pending, 3, seed=seed, n_startup=8)


# -- the search uses them -------------------------------------------------------------------------

def run(spec, evaluate, budget, seed, **options):
    history: list[Observation] = []
    for step in range(budget):
        [assignments] = suggest(spec, history, [], 1, seed=seed * 1000 + step, **options)
        values = evaluate(assignments)
        history.append(Observation(assignments=assignments, values=values, failed=values is None))
    return history


def test_no_linear_constraint_is_violated_over_20_seeds_and_100_suggestions():
    spec = spec_of(parameters=[double("a"), double("b"), {"name": "n", "type": "int", "bounds": {"min": 0, "max": 4}},
                               {"name": "m", "type": "int", "bounds": {"min": 0, "max": 4}}],
                   linear_constraints=[
                       {"type": "less_than", "threshold": 0.6, "terms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]},
                       {"type": "greater_than", "threshold": 0.1, "terms": [{"name": "a", "weight": 2}, {"name": "b", "weight": -1}]},
                       {"type": "less_than", "threshold": 5, "terms": [{"name": "n", "weight": 1}, {"name": "m", "weight": 1}]}])
    violations = 0
    for seed in range(20):
        history = run(spec, lambda a: {"y": (a["a"] - 0.5) ** 2 + (a["b"] - 0.4) ** 2 + abs(a["n"] - a["m"])}, 20, seed,
                      n_startup=6)
        batch = suggest(spec, history, [], 80, seed=seed, n_startup=6)
        violations += sum(not spec.constraints_hold(a) for a in [o.assignments for o in history] + batch)
    assert violations == 0


def test_the_search_finds_the_conditional_branch_that_holds_the_front():
    spec = ExperimentSpec.model_validate({
        "name": "branches", "conditionals": [{"name": "arch", "values": ["plain", "gated", "mixed"]}],
        "parameters": [double("x"), double("gate", conditions={"arch": ["gated"]}),
                       double("mix", conditions={"arch": ["mixed"]})],
        "metrics": [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize"}]})

    def evaluate(a):  # only the gated branch, with its gate near 0.7, reaches the best front
        offset = {"plain": 0.6, "mixed": 0.4 + 0.5 * abs(a.get("mix", 0) - 0.5)}.get(a["arch"], 0)
        if a["arch"] == "gated":
            offset = 2.0 * abs(a["gate"] - 0.7)
        return {"f1": a["x"], "f2": 1.0 + offset - math.sqrt(a["x"])}

    for seed in range(3):
        history = run(spec, evaluate, 40, seed)
        late = [o.assignments["arch"] for o in history[-15:]]
        best = min(history, key=lambda o: o.values["f2"] + o.values["f1"])
        assert best.assignments["arch"] == "gated" and late.count("gated") >= 8, (seed, late)


def test_a_prior_centred_on_the_optimum_beats_no_prior_at_budget_30():
    names = [f"x{i}" for i in range(6)]

    def spec_with(prior: bool):
        extra = {"prior": {"name": "normal", "mean": 0.8, "scale": 0.1}} if prior else {}
        return spec_of(parameters=[double(name, **extra) for name in names])

    def loss(a):
        return {"y": sum((a[name] - 0.8) ** 2 for name in names)}

    with_prior = [min(o.values["y"] for o in run(spec_with(True), loss, 30, seed)) for seed in range(5)]
    without = [min(o.values["y"] for o in run(spec_with(False), loss, 30, seed)) for seed in range(5)]
    assert np.median(with_prior) < np.median(without)


def test_multitask_beats_full_cost_only_search_at_equal_cost():
    parameters = [double(f"x{i}") for i in range(4)]
    metrics = [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize"}]
    multitask = ExperimentSpec.model_validate({"name": "mt", "parameters": parameters, "metrics": metrics,
                                               "tasks": [{"name": "quick", "cost": 0.1}, {"name": "full", "cost": 1}]})
    full_only = ExperimentSpec.model_validate({"name": "full", "parameters": parameters, "metrics": metrics})

    def truth(a):
        g = 1 + 2 * sum((a[f"x{i}"] - 0.2) ** 2 for i in range(1, 4))
        return a["x0"], g * (1 - math.sqrt(a["x0"] / g))

    def search(spec, seed, budget=25.0):
        rng, history, spent = np.random.default_rng(seed), [], 0.0
        while spent < budget:
            [proposal] = propose(spec, history, [], 1, seed=seed * 1000 + len(history), n_startup=6)
            f1, f2 = truth(proposal.assignments)
            if proposal.task == "quick":  # a noisy, biased view of the full task
                f2 = f2 + 0.15 + float(rng.normal(0.0, 0.05))
            history.append(Observation(assignments=proposal.assignments, values={"f1": f1, "f2": f2},
                                       task=proposal.task))
            spent += spec.task_cost(proposal.task)
        full = [truth(o.assignments) for o in history if spec.is_full_cost(o.task)]
        return hypervolume_2d(np.array(full), np.array([1.1, 1.1])), {o.task for o in history}

    multitask_runs = [search(multitask, seed) for seed in range(3)]
    assert all(tasks == {"quick", "full"} for _, tasks in multitask_runs)
    assert np.median([hv for hv, _ in multitask_runs]) >= np.median([search(full_only, seed)[0] for seed in range(3)])


def test_best_solutions_are_good_and_diverse():
    spec = spec_of(parameters=[double("x"), double("z")], num_solutions=3, observation_budget=50)
    history = [Observation(assignments={"x": x, "z": z}, values={"y": min((x - 0.1) ** 2, (x - 0.9) ** 2) + z})
               for x in np.linspace(0, 1, 21) for z in (0.0, 0.5)]
    chosen = best_solutions(spec, history)
    assert len(chosen) == 3
    assert chosen[0].values["y"] == min(o.values["y"] for o in history)
    xs = sorted(o.assignments["x"] for o in chosen)
    assert xs[0] < 0.3 and xs[-1] > 0.7  # both basins, not three neighbours of one optimum

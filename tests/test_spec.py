import copy
import json

import pytest
import yaml

from paretune.optimizer import ExperimentSpec, SpecError

VALID = {
    "name": "bert-squad2-distillation",
    "parameters": [
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1.0e-5, "max": 1.0e-3}, "transformation": "log"},
        {"name": "n_layers", "type": "int", "bounds": {"min": 1, "max": 6}, "default_value": 3},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd"]},
    ],
    "metrics": [
        {"name": "exact", "objective": "maximize", "strategy": "optimize", "threshold": 50.0},
        {"name": "num_parameters", "objective": "minimize", "strategy": "optimize"},
        {"name": "latency_ms", "objective": "minimize", "strategy": "constraint", "threshold": 20.0},
        {"name": "f1", "strategy": "store"},
    ],
    "observation_budget": 60,
    "parallel_bandwidth": 4,
    "metadata": {"objective": "paretune.bert.distill:run_trial"},
}


def problems_of(definition):
    with pytest.raises(SpecError) as caught:
        ExperimentSpec.model_validate(definition)
    return caught.value.problems


def edited(**changes):
    definition = copy.deepcopy(VALID)
    for path, value in changes.items():
        target = definition
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return definition


_DELETE = object()


def test_valid_definition_loads_with_typed_views():
    spec = ExperimentSpec.model_validate(VALID)
    assert [m.name for m in spec.optimized_metrics] == ["exact", "num_parameters"]
    assert [m.name for m in spec.constraint_metrics] == ["latency_ms"]
    assert [m.name for m in spec.required_metrics] == ["exact", "num_parameters", "latency_ms"]
    assert spec.parameter("learning_rate").is_log
    assert spec.parameter("optimizer").categorical_values == ("adamw", "sgd")


def test_sigopt_object_form_of_categorical_values_is_accepted():
    spec = ExperimentSpec.model_validate(
        edited(parameters__2__categorical_values=[{"name": "adamw", "enum_index": 1}, {"name": "sgd"}])
    )
    assert spec.parameter("optimizer").categorical_values == ("adamw", "sgd")


def test_sigopt_budget_alias():
    definition = edited(observation_budget=_DELETE)
    definition["budget"] = 12
    assert ExperimentSpec.model_validate(definition).observation_budget == 12


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_round_trip_through_files(tmp_path, suffix):
    spec = ExperimentSpec.model_validate(VALID)
    path = tmp_path / f"spec.{suffix}"
    text = yaml.safe_dump(spec.to_dict()) if suffix == "yaml" else json.dumps(spec.to_dict())
    path.write_text(text)
    again = ExperimentSpec.from_file(path)
    assert again == spec
    assert ExperimentSpec.model_validate(json.loads(again.to_json())) == spec
    assert again.to_dict()["parameters"][1]["bounds"] == {"min": 1, "max": 6}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ""}, "name: must not be empty"),
        ({"parameters__0__name": " "}, "parameters[0].name: must not be empty"),
        ({"parameters__1__name": "learning_rate"}, "parameters[1].name: 'learning_rate' is already used by parameters[0]"),
        ({"metrics__3__name": "exact"}, "metrics[3].name: 'exact' is already used by metrics[0]"),
        ({"parameters__1__bounds": {"min": 5, "max": 1}}, "parameters[1].bounds: min 5 >= max 1"),
        ({"parameters__0__bounds": {"min": 0.001, "max": 0.001}}, "parameters[0].bounds: min 0.001 >= max 0.001"),
        ({"parameters__0__bounds": {"min": 0, "max": 1}}, "parameters[0].bounds: log transformation needs min > 0"),
        ({"parameters__1__bounds": {"min": 1.5, "max": 6}}, "parameters[1].bounds: an int parameter needs whole-number bounds"),
        ({"parameters__2__categorical_values": ["adamw"]}, "parameters[2].categorical_values: give at least two values"),
        ({"parameters__2__categorical_values": ["a", "a"]}, "parameters[2].categorical_values: values must be distinct"),
        ({"parameters__1__default_value": 9}, "parameters[1].default_value: 9 is outside bounds 1..6"),
        ({"parameters__2__default_value": "adam"}, "parameters[2].default_value: 'adam' is not one of categorical_values"),
        ({"parameters__0__bounds": _DELETE}, "parameters[0].bounds: required for a double or int parameter"),
        ({"parameters__0__type": "float"}, "parameters[0].type: Input should be 'double', 'int' or 'categorical'"),
        ({"metrics": []}, "metrics: give at least one metric with `strategy: optimize`"),
        ({"metrics__3__strategy": "optimize"}, "metrics: 3 metrics have `strategy: optimize`; at most 2 may"),
        ({"metrics__3__threshold": 1.0}, "metrics[3].threshold: a `store` metric is only recorded"),
        ({"metrics__2__threshold": _DELETE}, "metrics[2].threshold: a `constraint` metric needs a threshold"),
        ({"metrics__0__threshold": float("nan")}, "metrics[0].threshold: must be a finite number"),
        ({"parameters__0__bounds": {"min": 1e-5, "max": float("inf")}}, "parameters[0].bounds.max: must be a finite number"),
        ({"observation_budget": 0}, "observation_budget: Input should be greater than or equal to 1"),
        ({"parallel_bandwidth": 0}, "parallel_bandwidth: Input should be greater than or equal to 1"),
        ({"parameters__0__bound": {"min": 1, "max": 2}}, "parameters[0].bound: unknown key; did you mean `bounds`?"),
        ({"observation_budgett": 5}, "observation_budgett: unknown key; did you mean `observation_budget`?"),
        ({"metrics__0__objectiv": "maximize"}, "metrics[0].objectiv: unknown key; did you mean `objective`?"),
        ({"parameters__1__conditions": {"attention": ["multi_head"]}},
         "parameters[1].conditions.attention: no conditional named 'attention'"),
    ],
)
def test_each_invalid_definition_is_refused_with_its_path(changes, expected):
    problems = problems_of(edited(**changes))
    assert any(p.startswith(expected) for p in problems), problems


def test_too_many_constraints_and_metrics():
    many_constraints = edited(metrics=VALID["metrics"][:2] + [
        {"name": f"c{i}", "strategy": "constraint", "threshold": 1.0} for i in range(5)
    ])
    assert any("5 constraint metrics; at most 4" in p for p in problems_of(many_constraints))
    too_many = edited(metrics=VALID["metrics"][:1] + [{"name": f"s{i}", "strategy": "store"} for i in range(50)])
    assert any("51 metrics; at most 50" in p for p in problems_of(too_many))


def test_every_problem_is_reported_at_once():
    definition = edited(
        name="",
        parameters__1__bounds={"min": 5, "max": 1},
        parameters__2__categorical_values=["x"],
        metrics__3__threshold=2.0,
        parallel_bandwidth=0,
    )
    with pytest.raises(SpecError) as caught:
        ExperimentSpec.model_validate(definition)
    message = str(caught.value)
    assert message.startswith("invalid experiment definition (6 problems)")
    for fragment in ["name:", "parameters[1].bounds", "parameters[1].default_value", "parameters[2].categorical_values", "metrics[3].threshold",
                     "parallel_bandwidth"]:
        assert fragment in message


def test_unreadable_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML/JSON"):
        ExperimentSpec.from_file(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(SpecError, match="must be a mapping"):
        ExperimentSpec.from_file(scalar)


def test_parameter_coercion_respects_type_and_bounds():
    spec = ExperimentSpec.model_validate(VALID)
    n_layers = spec.parameter("n_layers")
    assert n_layers.coerce(3.0) == 3 and isinstance(n_layers.coerce(3.0), int)
    for bad in (3.5, 7, "3", True, float("nan")):
        with pytest.raises(ValueError):
            n_layers.coerce(bad)
    with pytest.raises(ValueError, match="not one of"):
        spec.parameter("optimizer").coerce("adam")


def test_thresholds_follow_the_objective():
    spec = ExperimentSpec.model_validate(VALID)
    assert spec.meets_thresholds({"exact": 50.0, "num_parameters": 1e9, "latency_ms": 20.0})
    assert not spec.meets_thresholds({"exact": 49.9, "num_parameters": 1, "latency_ms": 1.0})
    assert not spec.meets_thresholds({"exact": 60.0, "num_parameters": 1, "latency_ms": 20.5})
    assert not spec.meets_thresholds({"exact": 60.0, "num_parameters": 1})


def test_demo_experiment_file_is_the_built_in_spec():
    from pathlib import Path

    from paretune.testfunctions import SIZE_VS_ERROR_SPEC

    path = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"
    assert ExperimentSpec.from_file(path) == ExperimentSpec.model_validate(SIZE_VS_ERROR_SPEC)

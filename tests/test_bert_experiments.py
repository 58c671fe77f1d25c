"""The three BERT experiment files: valid specs whose knobs and settings the objective accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretune.bert.settings import StudentAssignments, TrialSettings
from paretune.flows.preprocess import PreprocessParameters
from paretune.optimizer import ExperimentSpec

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
FILES = ["bert_squad2.yaml", "bert_squad2_extended.yaml", "bert_squad2_cpu.yaml"]


@pytest.mark.parametrize("name", FILES)
def test_experiment_loads_and_the_objective_accepts_it(name):
    spec = ExperimentSpec.from_file(EXPERIMENTS / name)
    assert spec.metadata["objective"] == "paretune.bert.distill:run_trial"
    TrialSettings.from_mapping(spec.metadata["trial"])
    accepted = set(StudentAssignments.model_fields)
    assert {parameter.name for parameter in spec.parameters} <= accepted
    for parameter in spec.parameters:
        if parameter.bounds is not None:
            StudentAssignments.from_mapping({parameter.name: parameter.coerce(parameter.bounds.min)})
            StudentAssignments.from_mapping({parameter.name: parameter.coerce(parameter.bounds.max)})
    PreprocessParameters.from_experiment(EXPERIMENTS / name).trial_settings()


def test_the_case_study_definition():
    spec = ExperimentSpec.from_file(EXPERIMENTS / "bert_squad2.yaml")
    assert len(spec.parameters) == 17
    assert (spec.observation_budget, spec.parallel_bandwidth) == (400, 20)
    exact = spec.metric("exact")
    assert (exact.objective, exact.strategy, exact.threshold) == ("maximize", "optimize", 50.0)
    assert spec.metric("num_parameters").objective == "minimize"
    assert spec.parameter("learning_rate").is_log
    trial = spec.metadata["trial"]
    assert (trial["teacher"], trial["student"]) == ("twmkn9/bert-base-uncased-squad2", "distilbert-base-uncased")
    assert (trial["epochs"], trial["max_seq_length"], trial["doc_stride"], trial["max_query_length"]) == (3, 384, 128, 64)


def test_the_extended_definition_constrains_latency():
    spec = ExperimentSpec.from_file(EXPERIMENTS / "bert_squad2_extended.yaml")
    assert spec.metric("latency_ms").strategy == "constraint"
    assert set(spec.parameter("layer_init").categorical_values) == {"every_k", "first", "last"}

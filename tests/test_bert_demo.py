"""The BERT demo: its experiment file, its data fallback, and the teacher recipe it relies on
(balanced teacher windows, a null-score threshold calibrated on train questions)."""

from __future__ import annotations

import json

import datasets
import pytest
import torch
from bert_fixtures import hand_made_squad, save_tiny_qa_model
from transformers import AutoModelForQuestionAnswering

from paretune.bert.metrics import squad_v2_evaluate
from paretune.bert.settings import StudentAssignments, TrialSettings
from paretune.bert.squad import FeatureLengths, dataset_to_squad_json, load_squad, load_tokenizer, tokenize_squad
from paretune.bert.teacher import teacher_training_windows
from paretune.bert.training import Inference, QuestionSet, calibrate_null_threshold, evaluate_model
from paretune.flows import bert_demo
from paretune.flows.preprocess import PreprocessParameters
from paretune.optimizer import ExperimentSpec

CLS = 101


def test_the_demo_experiment_is_a_small_two_metric_sweep_the_objective_accepts():
    spec = ExperimentSpec.from_file(bert_demo.DEMO_SPEC)
    settings = TrialSettings.from_mapping(spec.metadata["trial"])
    assert spec.metadata["objective"] == "paretune.bert.distill:run_trial"
    assert spec.observation_budget >= 8 and spec.parallel_bandwidth == 2
    # The CPU-scale family (answerable questions, answers always given) against size; SQuAD 2.0 is stored.
    assert [(m.name, m.objective) for m in spec.metrics if m.strategy == "optimize"] == [
        ("HasAns_f1", "maximize"), ("num_parameters", "minimize")
    ]
    assert {m.name for m in spec.metrics if m.strategy == "store"} >= {"HasAns_exact", "exact", "f1"}
    assert (spec.parameter("n_layers").bounds.min, spec.parameter("n_layers").bounds.max) == (1, 6)
    # Every metric the objective reports is declared, so each lands in the observation.
    assert {metric.name for metric in spec.metrics} == {
        "exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact",
        "num_parameters", "inference_time", "latency_ms", "peak_memory_mb",
    }
    for parameter in spec.parameters:
        StudentAssignments.from_mapping({parameter.name: parameter.coerce(parameter.bounds.min)})
        StudentAssignments.from_mapping({parameter.name: parameter.coerce(parameter.bounds.max)})
    assert settings.device == "cpu" and settings.torch_threads == 1 and settings.student == "teacher"
    assert settings.train_questions == "answerable" and settings.teacher_finetune


def test_the_demo_settings_are_the_ones_the_preprocess_flow_warms():
    """Every setting the preprocess flow reads (data, split, windows, teacher recipe, cache) is the
    trials' own, so the flow fills the very caches (features, teacher, logits) the trials key on."""
    settings = TrialSettings.from_mapping(ExperimentSpec.from_file(bert_demo.DEMO_SPEC).metadata["trial"])
    preprocess = PreprocessParameters.from_experiment(bert_demo.DEMO_SPEC).trial_settings()
    for name in PreprocessParameters.model_fields:
        assert getattr(preprocess, name) == getattr(settings, name), name
    assert preprocess.calibration_examples is not None and preprocess.teacher_train_examples is not None


def test_the_demo_reads_the_given_data_else_the_shared_file_else_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ../shared/data/squad2 beside this folder
    fallback = bert_demo.demo_definition(None)["metadata"]["trial"]
    assert (fallback["train_data"], fallback["train_split"]) == (bert_demo.HUB_DATASET, bert_demo.HUB_SPLIT)
    given = tmp_path / "dev.json"
    given.write_text(json.dumps(hand_made_squad()))
    assert bert_demo.demo_definition(str(given))["metadata"]["trial"]["train_data"] == str(given)
    with pytest.raises(SystemExit, match="no such file"):
        bert_demo.demo_definition(str(tmp_path / "missing.json"))


def _windows(start_positions: list[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"input_ids": [[CLS, 7, 8, 9]] * len(start_positions), "start_positions": start_positions}
    )


def test_teacher_windows_keep_every_answer_and_only_a_share_of_no_answer_windows():
    features = _windows([0, 2, 0, 0, 3, 0, 0, 0, 1, 0])
    kept = teacher_training_windows(features, CLS, no_answer_share=0.5, seed=0)
    assert sorted(start for start in kept["start_positions"] if start != 0) == [1, 2, 3]
    assert kept["start_positions"].count(0) == 3
    assert kept["start_positions"] == teacher_training_windows(features, CLS, 0.5, seed=0)["start_positions"]
    assert len(teacher_training_windows(features, CLS, no_answer_share=1.0, seed=0)) == len(features)


def test_teacher_windows_are_all_kept_when_none_holds_an_answer():
    features = _windows([0, 0, 0])
    assert len(teacher_training_windows(features, CLS, no_answer_share=0.5, seed=0)) == 3


def test_the_calibrated_threshold_reaches_the_best_f1_on_the_calibration_questions(tmp_path):
    (tmp_path / "squad.json").write_text(json.dumps(hand_made_squad()))
    examples = load_squad(str(tmp_path / "squad.json"))
    model_path = save_tiny_qa_model(tmp_path / "model", "bert", seed=3)
    model = AutoModelForQuestionAnswering.from_pretrained(model_path)
    features = tokenize_squad(
        examples, load_tokenizer(model_path), FeatureLengths(48, 16, 16), "eval", tmp_path / "cache"
    )
    gold = dataset_to_squad_json(examples)["data"]
    cpu = torch.device("cpu")
    questions, inference = QuestionSet(examples, features, gold), Inference(8, cpu, False, 20, 30)
    threshold = calibrate_null_threshold(model, questions, inference)
    answered = evaluate_model(model, questions, inference, float("inf"))
    best = squad_v2_evaluate(gold, answered.predictions.answers, na_probs=answered.predictions.null_score_diffs)
    calibrated = evaluate_model(model, questions, inference, threshold)
    assert calibrated.metrics["f1"] == pytest.approx(best["best_f1"])
    assert calibrated.metrics["f1"] >= evaluate_model(model, questions, inference, 0.0).metrics["f1"]


def test_the_demo_ends_with_its_tables_the_frontier_picture_and_the_frontier(tmp_path, monkeypatch):
    import io

    import paretune
    from paretune.flows.demo import demo_experiment
    from paretune.flows.tune import TuneResult
    from rich.console import Console

    monkeypatch.chdir(tmp_path)
    spec = ExperimentSpec.from_file(bert_demo.DEMO_SPEC)
    db = str(tmp_path / "demo.duckdb")
    experiment_id = demo_experiment(db, spec)
    assert demo_experiment(db, spec) == experiment_id  # an unfinished demo resumes
    experiment = paretune.open_experiment(experiment_id, db=db)
    experiment.set_observation_budget(3)
    for f1, size in ((40.0, 22e6), (25.0, 12e6), (10.0, 30e6)):
        experiment.observe(experiment.suggest(), values={"HasAns_f1": f1, "num_parameters": size})
    experiment.storage.close()
    assert demo_experiment(db, spec) != experiment_id  # a finished one is followed by NAME-2

    output = io.StringIO()
    result = TuneResult(experiment_id=experiment_id, experiment=spec.name, budget=3, observations=3, completed=3,
                        failed=0, expired_on_start=0)
    bert_demo.show_results(Console(file=output, width=300), db, result)
    printed = output.getvalue()
    picture = tmp_path / bert_demo.EXPORT_ROOT / "frontier.png"
    page = tmp_path / bert_demo.EXPORT_ROOT / "frontier.html"
    assert picture.read_bytes().startswith(b"\x89PNG") and "<html" in page.read_text().lower()
    assert f"Frontier picture: {picture}" in printed and str(page) in printed
    assert "Pareto frontier of" in printed and "22,000,000" in printed and "12,000,000" in printed
    assert "30,000,000" not in printed  # dominated: larger and worse

"""The preprocess-squad flow fills exactly the caches a trial then reads, and runs on its defaults."""

from __future__ import annotations

import contextlib
import inspect
import json
from pathlib import Path

import datasets
import pytest
from bert_fixtures import hand_made_squad, save_tiny_qa_model, shared_squad_file

from paretune.bert.data import prepare_squad_data
from paretune.bert.teacher import prepare_teacher
from paretune.bert.training import resolve_device
from paretune.flows import local_prefect, preprocess
from paretune.flows.preprocess import DEFAULT_EXPERIMENT, PreprocessParameters, preprocess_squad


@pytest.mark.slow
def test_preprocess_flow_prepares_what_trials_read(prefect_api, tmp_path, monkeypatch):
    (tmp_path / "squad.json").write_text(json.dumps(hand_made_squad()))
    parameters = PreprocessParameters(
        train_data=str(tmp_path / "squad.json"),
        eval_articles=["Oxygen"],
        max_seq_length=48,
        doc_stride=16,
        max_query_length=16,
        calibration_examples=2,
        max_train_examples=3,
        cache_dir=str(tmp_path / "cache"),
        teacher=save_tiny_qa_model(tmp_path / "teacher"),
        teacher_finetune=True,
        teacher_epochs=1,
        teacher_train_examples=5,  # the teacher learns from more questions than the students distil on
        device="cpu",
    )
    result = preprocess_squad(parameters)
    assert (result.train_examples, result.eval_examples) == (3, 3)
    assert Path(result.train_features).is_dir() and Path(result.eval_features).is_dir()
    assert (Path(result.teacher_logits) / "start_logits.npy").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("a trial tokenized again after preprocessing")

    monkeypatch.setattr(datasets.Dataset, "map", refuse)
    settings = parameters.trial_settings()
    data = prepare_squad_data(settings)
    assert len(data.eval_examples) == 3 and len(data.calibration_features) >= 2
    assert not set(data.calibration_examples["title"]) & set(data.train_examples["title"])
    assert len(data.teacher_features) > len(data.train_features)
    assert prepare_teacher(settings, data.teacher_features, resolve_device("cpu")) == result.teacher


def _flow_defaults() -> PreprocessParameters:
    return inspect.signature(preprocess_squad.fn).parameters["parameters"].default


def test_the_defaults_are_the_demo_experiments_data_and_valid_trial_settings():
    defaults = _flow_defaults()
    assert defaults == PreprocessParameters.from_experiment(DEFAULT_EXPERIMENT)
    settings = defaults.trial_settings()  # used to fail: "eval_data is not given, ..."
    assert settings.train_data.endswith("shared/data/squad2/dev-v2.0.json")
    assert settings.eval_data is None and settings.eval_articles


def test_the_parameters_are_trial_settings_fields_with_the_same_defaults_and_bounds():
    """One source of fields: a default or bound changed in TrialSettings changes the flow's form."""
    from paretune.bert.settings import TrialSettings

    for name, field in PreprocessParameters.model_fields.items():
        if name in preprocess.PREPROCESS_OVERRIDES:
            continue
        source = TrialSettings.model_fields[name]
        assert (field.annotation, field.default, field.metadata) == (source.annotation, source.default, source.metadata)
    assert PreprocessParameters().device == "auto" and PreprocessParameters(teacher=None).teacher is None
    with pytest.raises(ValueError, match="max_seq_length"):
        PreprocessParameters(max_seq_length=8)
    with pytest.raises(ValueError, match="epochs"):
        PreprocessParameters(epochs=2)  # a student's knob, not the data's


def test_the_command_line_prepares_the_defaults(monkeypatch):
    prepared = []
    monkeypatch.setattr(local_prefect, "prefect_api", contextlib.nullcontext)
    monkeypatch.setattr(preprocess, "preprocess_squad", lambda parameters: prepared.append(parameters) or
                        preprocess.PreprocessResult(cache_dir="c", train_examples=1, eval_examples=1,
                                                    train_features="t", eval_features="e"))
    preprocess.main([])
    assert prepared == [_flow_defaults()]


@pytest.mark.slow
def test_the_flow_runs_on_its_defaults_with_only_the_sizes_shrunk(prefect_api, tmp_path, monkeypatch):
    shared_squad_file("dev-v2.0.json")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the repository root, where deployments run
    shrunk = _flow_defaults().model_copy(update={
        "max_train_examples": 6, "teacher_train_examples": 8, "max_eval_examples": 4, "calibration_examples": 3,
        "teacher_epochs": 1,
        "cache_dir": str(tmp_path / "cache"),
    })
    result = preprocess_squad(shrunk)
    assert (result.train_examples, result.eval_examples) == (6, 4)
    assert Path(result.teacher).is_dir() and (Path(result.teacher_logits) / "end_logits.npy").exists()

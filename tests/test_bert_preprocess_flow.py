"""The preprocess-squad flow fills exactly the caches a trial then reads."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from bert_fixtures import hand_made_squad, save_tiny_qa_model

from bert.data import prepare_squad_data
from bert.teacher import prepare_teacher
from bert.training import resolve_device
from flows.preprocess import PreprocessParameters, preprocess_squad


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
        cache_dir=str(tmp_path / "cache"),
        teacher=save_tiny_qa_model(tmp_path / "teacher"),
        teacher_finetune=True,
        teacher_epochs=1,
        device="cpu",
    )
    result = preprocess_squad(parameters)
    assert (result.train_examples, result.eval_examples) == (5, 3)
    assert Path(result.train_features).is_dir() and Path(result.eval_features).is_dir()
    assert (Path(result.teacher_logits) / "start_logits.npy").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("a trial tokenized again after preprocessing")

    monkeypatch.setattr(datasets.Dataset, "map", refuse)
    settings = parameters.trial_settings()
    data = prepare_squad_data(settings)
    assert len(data.eval_examples) == 3 and len(data.calibration_features) >= 2
    assert not set(data.calibration_examples["title"]) & set(data.train_examples["title"])
    assert prepare_teacher(settings, data.train_features, resolve_device("cpu")) == result.teacher

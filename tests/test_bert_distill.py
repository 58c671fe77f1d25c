"""The objective end to end on a tiny random model: it reports, distils toward the teacher, keys its
caches by the teacher recipe, and turns errors into failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from bert_fixtures import hand_made_squad, save_tiny_qa_model
from transformers import AutoConfig, AutoModelForQuestionAnswering, set_seed

from paretune.bert import distill as bert_distill
from paretune.bert.data import prepare_squad_data
from paretune.bert.distill import distillation_loss, run_trial
from paretune.bert.metrics import answerable_evaluate
from paretune.bert.settings import StudentAssignments, TrialSettings
from paretune.bert.students import build_student, load_base, plan_student
from paretune.bert.teacher import prepare_teacher, teacher_logits
from paretune.bert.training import predict_logits
from paretune.failures import Diverged, InvalidConfiguration, OutOfMemory
from paretune.trial import TrialContext

FAST_KNOBS = {"learning_rate": 3.0e-3, "train_batch_size": 4, "eval_batch_size": 8, "alpha_ce": 0.5, "temperature": 2}


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("distill")
    (root / "squad.json").write_text(json.dumps(hand_made_squad()))
    return {
        "teacher": save_tiny_qa_model(root / "teacher", "bert", seed=0),
        "teacher_finetune": True,
        "teacher_epochs": 1,
        "student": "teacher",
        "train_data": str(root / "squad.json"),
        "eval_articles": ["Chess"],
        "epochs": 3,
        "max_seq_length": 48,
        "doc_stride": 16,
        "max_query_length": 16,
        "cache_dir": str(root / "cache"),
        "device": "cpu",
        "latency_repeats": 2,
    }


def test_a_tiny_distillation_trial_learns_and_reports(settings, tmp_path):
    context = TrialContext(settings=settings, artifact_dir=str(tmp_path / "artifacts"))
    metrics = run_trial({**FAST_KNOBS, "n_layers": 2, "n_heads": 2, "pruning_seed": 3}, context)
    assert set(metrics) == {
        "exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact",
        "num_parameters", "inference_time", "latency_ms", "peak_memory_mb",
    }
    assert 0 <= metrics["exact"] <= 100 and metrics["latency_ms"] > 0 and metrics["num_parameters"] > 0
    epochs = [epoch for epoch, _ in context.checkpoints]
    losses = [values["loss"] for _, values in context.checkpoints]
    assert epochs == [1, 2, 3]
    assert losses[-1] < losses[0]
    assert {"exact", "f1", "learning_rate", "loss"} <= set(context.checkpoints[0][1])
    assert context.checkpoints[-1][1]["exact"] == metrics["exact"]
    predictions = json.loads((tmp_path / "artifacts" / "predictions.json").read_text())
    assert set(predictions) == {"c1", "c2"}
    assert json.loads((tmp_path / "artifacts" / "metrics.json").read_text()) == metrics
    # HasAns_*: the official evaluation of the answerable questions, answers always given.
    forced = json.loads((tmp_path / "artifacts" / "predictions_forced.json").read_text())
    assert set(forced) == {"c1", "c2"} and all(forced.values())
    chess = [article for article in hand_made_squad()["data"] if article["title"] == "Chess"]
    assert answerable_evaluate(chess, forced) == {
        "HasAns_exact": metrics["HasAns_exact"], "HasAns_f1": metrics["HasAns_f1"], "HasAns_total": 1
    }
    assert {"HasAns_exact", "HasAns_f1"} <= set(context.checkpoints[-1][1])


def _kl_to_teacher(model, features, teacher_start: np.ndarray, teacher_end: np.ndarray) -> float:
    """Mean KL(teacher || model) of the start and end distributions over the windows."""
    start, end = predict_logits(model, features, 8, torch.device("cpu"), False)
    return sum(
        torch.nn.functional.kl_div(
            torch.from_numpy(student).log_softmax(-1), torch.from_numpy(np.array(teacher)).softmax(-1),
            reduction="batchmean",
        ).item()
        for student, teacher in ((start, teacher_start), (end, teacher_end))
    ) / 2


def test_a_distilled_student_moves_toward_the_teachers_logits(settings, tmp_path):
    # A teacher trained long enough to have opinions (peaked start/end distributions) to distil.
    trial = {**settings, "teacher_epochs": 8, "teacher_learning_rate": 3.0e-3, "teacher_batch_size": 2,
             "epochs": 4, "save_model": True, "cache_dir": str(tmp_path / "cache")}
    knobs = {**FAST_KNOBS, "alpha_ce": 1.0, "temperature": 1, "n_layers": 1, "dropout": 0.0, "attention_dropout": 0.0}
    context = TrialContext(settings=trial, artifact_dir=str(tmp_path / "student"))
    run_trial(knobs, context)
    losses = [values["loss"] for _, values in context.checkpoints]
    assert losses[-1] < losses[0]  # alpha_ce 1: the loss is the KL to the teacher alone

    trial_settings = TrialSettings.from_mapping(trial)
    data = prepare_squad_data(trial_settings)
    teacher = prepare_teacher(trial_settings, data.train_features, torch.device("cpu"))
    teacher_start, teacher_end = teacher_logits(teacher, data.train_features, trial["cache_dir"], torch.device("cpu"), False)
    set_seed(trial_settings.seed)  # the student as the trial built it, before any training
    untrained = build_student(plan_student(AutoConfig.from_pretrained(teacher), StudentAssignments(**knobs)), load_base(teacher)[1])
    distilled = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "student" / "model")
    before = _kl_to_teacher(untrained, data.train_features, teacher_start, teacher_end)
    after = _kl_to_teacher(distilled, data.train_features, teacher_start, teacher_end)
    assert after < 0.8 * before


def test_a_changed_teacher_recipe_or_train_questions_never_reuses_teacher_or_logits(settings, tmp_path):
    def prepared(**changes) -> tuple[str, str]:
        trial_settings = TrialSettings.from_mapping({**settings, "cache_dir": str(tmp_path), **changes})
        data = prepare_squad_data(trial_settings)
        teacher = prepare_teacher(trial_settings, data.train_features, torch.device("cpu"))
        start, _ = teacher_logits(teacher, data.train_features, str(tmp_path), torch.device("cpu"), False)
        return teacher, start.filename

    recipes = [
        prepared(),
        prepared(teacher_no_answer_share=0.0),
        prepared(teacher_learning_rate=1.0e-4),
        prepared(train_questions="answerable"),
    ]
    assert len({teacher for teacher, _ in recipes}) == len({logits for _, logits in recipes}) == len(recipes)
    assert prepared(teacher_no_answer_share=0.0) == recipes[1]  # the same recipe reads its caches


def test_teacher_and_its_logits_are_prepared_once(settings, tmp_path):
    from pathlib import Path

    cache = Path(settings["cache_dir"])
    run_trial({**FAST_KNOBS, "n_layers": 1}, TrialContext(settings={**settings, "epochs": 1}))
    teachers = [path for path in (cache / "teachers").iterdir() if path.is_dir()]
    logits = [path for path in (cache / "teacher_logits").iterdir() if path.is_dir()]
    stamps = [path.stat().st_mtime_ns for path in teachers + logits]
    run_trial({**FAST_KNOBS, "n_layers": 1, "n_heads": 1}, TrialContext(settings={**settings, "epochs": 1}))
    assert [path for path in (cache / "teachers").iterdir() if path.is_dir()] == teachers
    assert len(teachers) == len(logits) == 1
    assert [path.stat().st_mtime_ns for path in teachers + logits] == stamps


def test_a_distilbert_student_learns_from_a_bert_teacher(settings, tmp_path):
    student = save_tiny_qa_model(tmp_path / "student", "distilbert", seed=1)
    context = TrialContext(settings={**settings, "student": student, "epochs": 1})
    metrics = run_trial({**FAST_KNOBS, "n_layers": 1, "n_heads": 2}, context)
    full = AutoModelForQuestionAnswering.from_pretrained(student)
    head_size = 32 // 4
    pruned_per_layer = 2 * (3 * (32 * head_size + head_size) + 32 * head_size)
    layer = sum(p.numel() for p in full.distilbert.transformer.layer[0].parameters())
    assert metrics["num_parameters"] == full.num_parameters(only_trainable=True) - layer - pruned_per_layer
    assert len(context.checkpoints) == 1


def test_cuda_out_of_memory_becomes_an_out_of_memory_failure(settings, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(bert_distill, "train_epoch", out_of_memory)
    with pytest.raises(OutOfMemory, match="Tried to allocate 2.00 GiB"):
        run_trial(FAST_KNOBS, TrialContext(settings=settings))


def test_a_config_estimated_not_to_fit_fails_before_building_anything(settings, monkeypatch):
    def must_not_build(*args, **kwargs):
        raise AssertionError("the student was built although it cannot fit")

    monkeypatch.setattr(bert_distill, "load_base", must_not_build)
    with pytest.raises(OutOfMemory, match="exceeds memory_limit_mb"):
        run_trial(FAST_KNOBS, TrialContext(settings={**settings, "memory_limit_mb": 1.0}))


def test_nan_loss_becomes_diverged(settings, monkeypatch):
    real_loss = bert_distill.distillation_loss

    def nan_loss(*args, **kwargs):
        return real_loss(*args, **kwargs) * float("nan")

    monkeypatch.setattr(bert_distill, "distillation_loss", nan_loss)
    context = TrialContext(settings=settings)
    with pytest.raises(Diverged, match="loss became nan at epoch 1, step 0"):
        run_trial(FAST_KNOBS, context)
    assert context.checkpoints == []


def test_heads_that_cannot_split_the_hidden_size_are_an_invalid_configuration(settings):
    with pytest.raises(InvalidConfiguration, match="n_heads=7"):
        run_trial({**FAST_KNOBS, "n_heads": 7}, TrialContext(settings=settings))


def test_unknown_settings_and_assignments_are_named(settings):
    with pytest.raises(ValueError, match="max_seq_lenght"):
        run_trial(FAST_KNOBS, TrialContext(settings={**settings, "max_seq_lenght": 64}))
    with pytest.raises(ValueError, match="n_layer"):
        run_trial({"n_layer": 2}, TrialContext(settings=settings))
    with pytest.raises(ValueError, match="teacher_train_examples sizes the teacher's fine-tune"):
        run_trial(FAST_KNOBS, TrialContext(settings={**settings, "teacher_finetune": False, "teacher_train_examples": 4}))
    with pytest.raises(ValueError, match="eval_articles"):
        run_trial(FAST_KNOBS, TrialContext(settings={key: value for key, value in settings.items() if key != "eval_articles"}))


def test_distillation_loss_mixes_soft_and_hard_terms():
    torch.manual_seed(0)
    student_start, student_end, teacher_start, teacher_end = torch.randn(4, 3, 10).unbind(0)
    hard = torch.tensor(2.5)
    assert distillation_loss(student_start, student_end, teacher_start, teacher_end, hard, 0.0, 3.0) == hard
    same = distillation_loss(student_start, student_end, student_start, student_end, hard, 1.0, 3.0)
    assert same.abs() < 1e-6
    soft_t1 = distillation_loss(student_start, student_end, teacher_start, teacher_end, hard, 1.0, 1.0)
    kl_start = torch.nn.functional.kl_div(
        student_start.log_softmax(-1), teacher_start.softmax(-1), reduction="batchmean"
    )
    kl_end = torch.nn.functional.kl_div(student_end.log_softmax(-1), teacher_end.softmax(-1), reduction="batchmean")
    assert soft_t1 == pytest.approx(((kl_start + kl_end) / 2).item())
    mixed = distillation_loss(student_start, student_end, teacher_start, teacher_end, hard, 0.25, 1.0)
    assert mixed == pytest.approx(0.25 * soft_t1.item() + 0.75 * 2.5)

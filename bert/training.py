"""The pieces a QA training run is made of, shared by the teacher fine-tune and distillation:
batching features, an accelerate training epoch, logits over features, and SQuAD evaluation."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from paretune.bert.metrics import answerable_evaluate, get_raw_scores, make_qid_to_has_ans, squad_v2_evaluate
from paretune.bert.postprocess import QAPredictions, postprocess_qa_predictions
from paretune.failures import Diverged

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
NO_WEIGHT_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight")

LossFunction = Callable[[nn.Module, dict[str, torch.Tensor], np.ndarray], torch.Tensor]


def resolve_device(device: str) -> torch.device:
    """`auto` is CUDA when there is one; a CUDA device that is not there is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but this machine has no CUDA device; set device: cpu")
    return resolved


def make_accelerator(device: torch.device, amp: bool, gradient_accumulation_steps: int) -> Accelerator:
    """fp16 autocast and loss scaling under `amp` on CUDA, gradient accumulation everywhere."""
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    use_amp = amp and device.type == "cuda"
    return Accelerator(
        cpu=device.type == "cpu",
        mixed_precision="fp16" if use_amp else "no",
        gradient_accumulation_steps=gradient_accumulation_steps,
    )


def accepted_inputs(model: nn.Module, columns: list[str]) -> list[str]:
    """The feature columns this model's forward takes (DistilBERT has no token_type_ids)."""
    parameters = inspect.signature(model.forward).parameters
    return [name for name in MODEL_INPUTS if name in columns and name in parameters]


def index_batches(count: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights, none on biases and LayerNorm (run_qa's grouping)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if name.endswith(NO_WEIGHT_DECAY) else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module,
    name: str,
    learning_rate: float,
    betas: tuple[float, float],
    epsilon: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum beta_1 (the extended experiment's alternative). AdamW runs
    fused: on CPU its step over a BERT's word embeddings is about 9x faster than the default
    per-tensor loop, a tenth of a CPU student's training time."""
    groups = parameter_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=epsilon, fused=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=learning_rate, momentum=betas[0])
    raise ValueError(f"optimizer {name!r} is not one of adamw, sgd")


def training_steps(num_features: int, batch_size: int, gradient_accumulation_steps: int, epochs: int) -> int:
    return math.ceil(math.ceil(num_features / batch_size) / gradient_accumulation_steps) * epochs


@dataclass
class EpochResult:
    mean_loss: float
    learning_rate: float
    steps: int


def train_epoch(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    features: datasets.Dataset,
    batch_size: int,
    seed: int,
    loss_function: LossFunction,
    epoch: int,
    part: int = 0,
    parts: int = 1,
) -> EpochResult:
    """One shuffled pass, or its `part`-th of `parts` equal slices (the same shuffle for every
    part of an epoch: evaluation points inside an epoch); a NaN or infinite loss raises Diverged
    at once."""
    columns = accepted_inputs(accelerator.unwrap_model(model), features.column_names)
    torch_features = features.with_format("torch", columns=[*columns, "start_positions", "end_positions"])
    # A prepared loader tells accelerate where the epoch ends, so a last partial accumulation still steps.
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed)).tolist()
    batches = math.ceil(len(features) / batch_size)
    first, last = (part * batches) // parts * batch_size, ((part + 1) * batches) // parts * batch_size
    loader = accelerator.prepare(DataLoader(order[first:last], batch_size=batch_size, shuffle=False))
    model.train()
    total_loss = 0.0
    for step, index_tensor in enumerate(loader):
        indices = index_tensor.cpu().numpy()
        batch = {name: tensor.to(accelerator.device) for name, tensor in torch_features[indices].items()}
        with accelerator.accumulate(model):
            loss = loss_function(model, batch, indices)
            loss_value = loss.detach().float().item()
            if not math.isfinite(loss_value):
                raise Diverged(f"loss became {loss_value} at epoch {epoch}, step {step}")
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        total_loss += loss_value
    return EpochResult(
        mean_loss=total_loss / max(len(loader), 1),
        learning_rate=scheduler.get_last_lr()[0],
        steps=len(loader),
    )


def predict_logits(
    model: nn.Module, features: datasets.Dataset, batch_size: int, device: torch.device, amp: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end logits, [num_windows, seq_len] float32 each, in feature order."""
    columns = accepted_inputs(model, features.column_names)
    torch_features = features.with_format("torch", columns=columns)
    starts, ends = [], []
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
        for indices in index_batches(len(features), batch_size):
            batch = {name: tensor.to(device) for name, tensor in torch_features[indices].items()}
            output = model(**batch)
            starts.append(output.start_logits.float().cpu().numpy())
            ends.append(output.end_logits.float().cpu().numpy())
    return np.concatenate(starts), np.concatenate(ends)


@dataclass
class Evaluation:
    """Official SQuAD 2.0 scores at the null threshold (`metrics`), the SQuAD 1.1-style scores of
    the answerable questions with answers always given (`answerable`: HasAns_exact, HasAns_f1,
    HasAns_total), the predictions behind both, and the wall time of the whole pass."""

    metrics: dict[str, float]
    answerable: dict[str, float]
    predictions: QAPredictions
    seconds: float


@dataclass(frozen=True)
class QuestionSet:
    """Questions, their tokenized windows and their gold answers (nested SQuAD `data`): what an
    evaluation or a threshold calibration reads."""

    examples: datasets.Dataset
    features: datasets.Dataset
    gold: list[dict]


@dataclass(frozen=True)
class Inference:
    """How answers are predicted: batches on a device (fp16 autocast on CUDA with `amp`), then the
    n-best spans of at most `max_answer_length` tokens."""

    batch_size: int
    device: torch.device
    amp: bool
    n_best_size: int
    max_answer_length: int


def evaluate_model(model: PreTrainedModel, questions: QuestionSet, inference: Inference,
                   null_score_diff_threshold: float) -> Evaluation:
    """Scores of `model` on `questions`, from one pass over the logits.

    `seconds` is the wall time of the whole pass: logits, post-processing and scoring.
    """
    started = time.perf_counter()
    predictions = predict_answers(model, questions, inference, null_score_diff_threshold)
    metrics = squad_v2_evaluate(questions.gold, predictions.answers)
    answerable = answerable_evaluate(questions.gold, predictions.best_spans)
    return Evaluation(metrics, answerable, predictions, seconds=time.perf_counter() - started)


def predict_answers(model: PreTrainedModel, questions: QuestionSet, inference: Inference,
                    null_score_diff_threshold: float) -> QAPredictions:
    """The model's answer text per question: logits over every window, then post-processing."""
    examples, features = questions.examples, questions.features
    start_logits, end_logits = predict_logits(model, features, inference.batch_size, inference.device, inference.amp)
    return postprocess_qa_predictions(
        examples["id"],
        examples["context"],
        features["example_id"],
        features["offset_mapping"],
        start_logits,
        end_logits,
        n_best_size=inference.n_best_size,
        max_answer_length=inference.max_answer_length,
        null_score_diff_threshold=null_score_diff_threshold,
    )


def calibrate_null_threshold(model: PreTrainedModel, questions: QuestionSet, inference: Inference) -> float:
    """The null-score difference above which answering "" gives the best F1 on these questions
    (meant for train questions, never the eval articles).

    The official script's `best_f1_thresh` does this sweep too, but reports 0.0 when answering
    nothing at all is best, which as a threshold would answer every question with a negative
    difference; here that case is a threshold below every difference seen.
    """
    predictions = predict_answers(model, questions, inference, math.inf)
    answered_f1 = get_raw_scores(questions.gold, predictions.best_spans)[1]
    has_answer = make_qid_to_has_ans(questions.gold)
    by_difference = sorted(predictions.null_score_diffs.items(), key=lambda item: item[1])
    threshold = by_difference[0][1] - 1.0
    score = best_score = sum(not has_answer[qid] for qid, _ in by_difference)
    for qid, difference in by_difference:
        score += answered_f1[qid] - (not has_answer[qid])
        if score > best_score:
            best_score, threshold = score, difference
    return threshold

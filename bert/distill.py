"""The tuning objective: distil a SQuAD 2.0 teacher into a student shaped by the assignments.

`run_trial(assignments, context)` is what an experiment's `metadata.objective:
"paretune.bert.distill:run_trial"` names. `context.settings` is the spec's `metadata.trial` (read as
`bert.settings.TrialSettings`: teacher, student base, data, epochs, lengths, cache dir,
device...); `assignments` are the tuned knobs (`bert.settings.StudentAssignments`; a knob the
experiment does not tune keeps its default).

The metrics it returns: SQuAD 2.0's `exact` and `f1` (the official evaluation, the null-score
threshold calibrated on held-out train questions) with `NoAns_exact`; `HasAns_exact` and
`HasAns_f1`, the official evaluation of the answerable eval questions with answers always given
(the best non-null span, SQuAD 1.1-style: the CPU-scale experiments optimize these, since a
teacher fine-tuned in CPU-minutes learns extraction but not SQuAD 2.0's rejection); size,
inference time, batch-1 latency and peak memory. Failures that are information become
`paretune.failures`: a config estimated or found not to fit in memory is `OutOfMemory`, a head
count that cannot split the hidden size is `InvalidConfiguration`, a NaN or infinite loss is
`Diverged`. Anything else is a bug and propagates.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import torch
from torch import nn
from torch.nn import functional
from transformers import AutoConfig, get_linear_schedule_with_warmup, set_seed

from paretune.bert.data import SquadData, prepare_squad_data
from paretune.bert.latency import measure_latency_ms
from paretune.bert.settings import STUDENT_FROM_TEACHER, StudentAssignments, TrialSettings, resolve_model_path
from paretune.bert.squad import dataset_to_squad_json
from paretune.bert.students import (
    StudentPlan,
    build_student,
    count_parameters,
    estimate_training_memory,
    load_base,
    plan_parameter_count,
    plan_student,
)
from paretune.bert.teacher import prepare_teacher, teacher_logits
from paretune.bert.training import (
    Evaluation,
    Inference,
    QuestionSet,
    accepted_inputs,
    build_optimizer,
    calibrate_null_threshold,
    evaluate_model,
    make_accelerator,
    resolve_device,
    train_epoch,
    training_steps,
)
from paretune.failures import OutOfMemory
from paretune.trial import TrialContext

logger = logging.getLogger(__name__)

# Room left for the CUDA context, allocator fragmentation and the eval pass.
CUDA_HEADROOM_MB = 1024.0


def distillation_loss(
    student_start: torch.Tensor,
    student_end: torch.Tensor,
    teacher_start: torch.Tensor,
    teacher_end: torch.Tensor,
    hard_loss: torch.Tensor,
    alpha_ce: float,
    temperature: float,
) -> torch.Tensor:
    """alpha_ce * soft loss + (1 - alpha_ce) * hard SQuAD loss.

    The soft loss is the KL divergence between the temperature-softened teacher and student
    distributions over start (and end) positions, averaged over the two and scaled by T^2 so its
    gradients keep their size as T changes: `KLDivLoss(log_softmax(s/T), softmax(t/T)) * T^2`,
    as in transformers' DistilBERT SQuAD distillation (Sanh et al., 2019).
    """
    soft_loss = 0.0
    for student, teacher in ((student_start, teacher_start), (student_end, teacher_end)):
        soft_loss = soft_loss + functional.kl_div(
            functional.log_softmax(student.float() / temperature, dim=-1),
            functional.softmax(teacher.float() / temperature, dim=-1),
            reduction="batchmean",
        )
    soft_loss = soft_loss / 2 * temperature**2
    return alpha_ce * soft_loss + (1.0 - alpha_ce) * hard_loss


def make_distillation_loss(
    teacher_start: np.ndarray, teacher_end: np.ndarray, alpha_ce: float, temperature: float
):
    """The per-batch loss: student forward (with labels, for the hard loss) against the cached teacher rows."""

    def loss_function(model: nn.Module, batch: dict[str, torch.Tensor], indices: np.ndarray) -> torch.Tensor:
        output = model(**batch)
        device = output.start_logits.device
        return distillation_loss(
            output.start_logits,
            output.end_logits,
            torch.from_numpy(np.asarray(teacher_start[indices])).to(device),
            torch.from_numpy(np.asarray(teacher_end[indices])).to(device),
            output.loss,
            alpha_ce,
            temperature,
        )

    return loss_function


def run_trial(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Train one student, report each evaluation (`evaluations_per_epoch` per epoch) as a
    checkpoint, and return the final metrics, or the latest ones when told to stop (see module
    docstring)."""
    settings = TrialSettings.from_mapping(context.settings)
    knobs = StudentAssignments.from_mapping(assignments)
    device = resolve_device(settings.device or context.device)
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    set_seed(settings.seed)
    try:
        return _run(settings, knobs, device, context)
    except torch.cuda.OutOfMemoryError as error:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemory(f"CUDA out of memory: {str(error).splitlines()[0] if str(error) else 'no detail'}") from error


def _run(settings: TrialSettings, knobs: StudentAssignments, device: torch.device, context: TrialContext) -> dict[str, float]:
    data = prepare_squad_data(settings)
    teacher = prepare_teacher(settings, data.teacher_features, device)
    base = teacher if settings.student == STUDENT_FROM_TEACHER else resolve_model_path(settings.student)
    plan = plan_student(AutoConfig.from_pretrained(base), knobs)
    _check_vocabulary(plan, data, base)
    _check_fits(plan, knobs, settings, device, plan_parameter_count(plan))
    soft_start, soft_end = teacher_logits(teacher, data.train_features, settings.cache_dir, device, settings.amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    training = _Training.start(plan, base, knobs, settings, device,
                               make_distillation_loss(soft_start, soft_end, knobs.alpha_ce, knobs.temperature))
    inference = Inference(knobs.eval_batch_size, device, settings.amp, settings.n_best_size, settings.max_answer_length)
    evaluation = _train_with_checkpoints(training, data, knobs, settings, inference, context)

    student = training.accelerator.unwrap_model(training.model)
    columns = accepted_inputs(student, data.eval_features.column_names)
    latency_inputs = data.eval_features.select(range(1)).with_format("torch", columns=columns)[:]
    # NaN or infinite values need no check here: the lifecycle's one cleaner records them as `diverged`.
    metrics = _accuracy(evaluation) | {
        "NoAns_exact": evaluation.metrics.get("NoAns_exact", 0.0),
        "num_parameters": float(count_parameters(student)),
        "inference_time": evaluation.seconds,
        "latency_ms": measure_latency_ms(student, latency_inputs, repeats=settings.latency_repeats),
        "peak_memory_mb": _peak_memory_mb(device),
    }
    if context.artifact_dir:
        _write_artifacts(context.artifact_dir, student, evaluation, metrics, settings.save_model)
    return metrics


@dataclass
class _Training:
    """One student's training state: what `train_epoch` advances between checkpoints."""

    accelerator: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_function: Any

    @classmethod
    def start(cls, plan: StudentPlan, base: str, knobs: StudentAssignments, settings: TrialSettings,
              device: torch.device, loss_function: Any) -> _Training:
        _, base_state = load_base(base)
        student = build_student(plan, base_state)
        del base_state
        accelerator = make_accelerator(device, settings.amp, settings.gradient_accumulation_steps)
        optimizer = build_optimizer(student, knobs.optimizer, knobs.learning_rate, (knobs.beta_1, knobs.beta_2),
                                    knobs.adam_epsilon, knobs.weight_decay)
        return cls(accelerator, student, optimizer, loss_function)


def _train_with_checkpoints(training: _Training, data: SquadData, knobs: StudentAssignments, settings: TrialSettings,
                            inference: Inference, context: TrialContext) -> Evaluation:
    """Train for the settings' epochs, evaluating `evaluations_per_epoch` times an epoch; each
    evaluation is a checkpoint the context may answer with "stop" (early stopping). Returns the
    last evaluation: the student as it is when training ends or is stopped."""
    total_steps = training_steps(len(data.train_features), knobs.train_batch_size,
                                 settings.gradient_accumulation_steps, settings.epochs)
    scheduler = get_linear_schedule_with_warmup(training.optimizer, min(knobs.warm_up_steps, total_steps), total_steps)
    model, optimizer, scheduler = training.accelerator.prepare(training.model, training.optimizer, scheduler)
    questions = QuestionSet(data.eval_examples, data.eval_features, dataset_to_squad_json(data.eval_examples)["data"])
    calibration = _calibration_set(data)
    num_parameters = float(count_parameters(training.model))
    for checkpoint in range(1, settings.epochs * settings.evaluations_per_epoch + 1):
        epoch, part = divmod(checkpoint - 1, settings.evaluations_per_epoch)
        result = train_epoch(training.accelerator, model, optimizer, scheduler, data.train_features,
                             knobs.train_batch_size, settings.seed + epoch + 1, training.loss_function, epoch + 1, part,
                             settings.evaluations_per_epoch)
        unwrapped = training.accelerator.unwrap_model(model)
        threshold = (settings.null_score_diff_threshold if calibration is None
                     else calibrate_null_threshold(unwrapped, calibration, inference))
        evaluation = evaluate_model(unwrapped, questions, inference, threshold)
        logger.info("checkpoint %d (epoch %d): loss %.4f exact %.2f f1 %.2f HasAns_f1 %.2f", checkpoint, epoch + 1,
                    result.mean_loss, evaluation.metrics["exact"], evaluation.metrics["f1"],
                    evaluation.answerable["HasAns_f1"])
        stop = context.report_checkpoint(checkpoint, _accuracy(evaluation) | {
            "num_parameters": num_parameters,  # known from the first checkpoint: early stopping reads it so
            "loss": result.mean_loss, "learning_rate": result.learning_rate, "inference_time": evaluation.seconds,
            "null_score_diff_threshold": threshold,
        })
        if stop:  # told to stop early: the student as it is now is the result
            logger.info("told to stop at checkpoint %d", checkpoint)
            break
    training.model = model
    return evaluation


def _accuracy(evaluation: Evaluation) -> dict[str, float]:
    """The official SQuAD 2.0 figures every checkpoint and the final result report."""
    return {"exact": evaluation.metrics["exact"], "f1": evaluation.metrics["f1"],
            "HasAns_exact": evaluation.answerable["HasAns_exact"], "HasAns_f1": evaluation.answerable["HasAns_f1"]}


def _calibration_set(data: SquadData) -> QuestionSet | None:
    """Questions of train articles held out of training, on which the null-score threshold is chosen."""
    if data.calibration_examples is None:
        return None
    return QuestionSet(
        data.calibration_examples, data.calibration_features, dataset_to_squad_json(data.calibration_examples)["data"]
    )


def _check_vocabulary(plan: StudentPlan, data: SquadData, base: str) -> None:
    if plan.config.vocab_size < len(data.tokenizer):
        raise ValueError(
            f"student {base} has {plan.config.vocab_size} token embeddings but the tokenizer "
            f"{data.tokenizer.name_or_path} has {len(data.tokenizer)} tokens; teacher and student "
            "must share a vocabulary (set `tokenizer` or pick a matching student)"
        )


def _check_fits(
    plan: StudentPlan, knobs: StudentAssignments, settings: TrialSettings, device: torch.device, num_parameters: int
) -> None:
    """OutOfMemory before anything is allocated when the estimate exceeds what the device has."""
    needed_mb = estimate_training_memory(
        plan.config,
        knobs.train_batch_size,
        settings.max_seq_length,
        settings.amp and device.type == "cuda",
        heads_per_layer=plan.heads_per_layer,
        num_parameters=num_parameters,
    )
    limits = []
    if settings.memory_limit_mb is not None:
        limits.append((settings.memory_limit_mb, "memory_limit_mb"))
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        limits.append((free_bytes / 2**20 - CUDA_HEADROOM_MB, f"free memory on {device}"))
    for limit_mb, what in limits:
        if needed_mb > limit_mb:
            raise OutOfMemory(
                f"estimated {needed_mb:.0f} MB to train ({num_parameters} parameters, batch "
                f"{knobs.train_batch_size} x {settings.max_seq_length} tokens) exceeds {what} ({limit_mb:.0f} MB)"
            )


def _peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated during the trial, or on CPU the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _write_artifacts(artifact_dir: str, student, evaluation: Evaluation, metrics: dict[str, float], save_model: bool) -> None:
    """Predictions at the calibrated threshold, null odds (the official script's na-prob file),
    the answers always given (`python -m paretune.bert.evaluate` on them prints the trial's HasAns_* figures)
    and metrics; the model if asked."""
    filesystem, root = fsspec.core.url_to_fs(artifact_dir)
    filesystem.makedirs(root, exist_ok=True)
    documents = {
        "predictions.json": evaluation.predictions.answers,
        "null_odds.json": evaluation.predictions.null_score_diffs,
        "predictions_forced.json": evaluation.predictions.best_spans,
        "metrics.json": metrics,
    }
    for name, document in documents.items():
        with filesystem.open(f"{root}/{name}", "w") as handle:
            json.dump(document, handle)
    if save_model:
        with tempfile.TemporaryDirectory() as local:
            student.save_pretrained(local)
            filesystem.put(f"{local}/", f"{root}/model/", recursive=True)

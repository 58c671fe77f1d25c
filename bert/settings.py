"""What a distillation trial reads: fixed settings (`metadata.trial`) and tuned assignments.

Both are strict: an unknown key is refused with its name, so a typo in an experiment file is
an error at the first trial rather than a knob silently left at its default.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

HUB_TEACHER = "twmkn9/bert-base-uncased-squad2"
HUB_STUDENT = "distilbert-base-uncased"
PYTHON_PACKAGE_PREFIX = "python:"
STUDENT_FROM_TEACHER = "teacher"

# Dropout of exactly 1.0 is a legal bound of the case study's search space but zeroes every
# activation, so the network would train on nothing; it is clamped to this value instead and
# whatever the trial then does (usually a poor score, sometimes a divergence) is recorded.
MAX_DROPOUT = 0.99

_STRICT = ConfigDict(extra="forbid", frozen=True)

TrainQuestions = Literal["all", "answerable"]


class TrialSettings(BaseModel):
    """The experiment's fixed knobs: `metadata.trial` of the spec, given as `context.settings`."""

    model_config = _STRICT

    teacher: str = Field(
        HUB_TEACHER,
        description="hub name, local folder, or `python:<module>` whose get_model_path() gives a folder",
    )
    teacher_finetune: bool = Field(False, description="fine-tune the teacher once on the train split (cached)")
    teacher_epochs: int = Field(2, ge=1)
    teacher_learning_rate: float = Field(5.0e-5, gt=0)
    teacher_batch_size: int = Field(16, ge=1)
    teacher_train_examples: int | None = Field(
        None,
        ge=1,
        description="the fine-tune trains on the first N train questions; None: the students' "
        "max_train_examples. A teacher may learn from more than each student distils on, as a hub teacher has",
    )
    teacher_no_answer_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="the fine-tune keeps every window holding an answer and draws no-answer windows "
        "(labelled at CLS) up to this share of what it trains on; 0: answer windows only",
    )
    student: str = Field(HUB_STUDENT, description=f"student base (name/folder/python:), or `{STUDENT_FROM_TEACHER}`")
    tokenizer: str | None = Field(None, description="defaults to the teacher's tokenizer")

    train_data: str | list[str] = Field("squad_v2", description="hub dataset name, or SQuAD JSON path/URL(s)")
    train_split: str = "train"
    eval_data: str | list[str] | None = Field(None, description="None: carve the eval articles out of train_data")
    eval_split: str = "validation"
    eval_articles: list[str] | int | None = None
    eval_fraction: float | None = Field(None, gt=0, lt=1)
    split_seed: int = 0
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    train_questions: TrainQuestions = Field(
        "all",
        description="`answerable`: teacher and students train on the answerable train questions only "
        "(SQuAD 1.1-style), for experiments scored on HasAns_*; eval and calibration questions keep both kinds",
    )

    epochs: int = Field(3, ge=1)
    evaluations_per_epoch: int = Field(
        1, ge=1, description="evaluate (and report a checkpoint) this many times per epoch, at equal steps: the "
        "checkpoint curve early stopping reads; a trial has epochs x evaluations_per_epoch checkpoints",
    )
    max_seq_length: int = Field(384, ge=16)
    doc_stride: int = Field(128, ge=1)
    max_query_length: int = Field(64, ge=1)
    max_answer_length: int = Field(30, ge=1)
    n_best_size: int = Field(20, ge=1)
    null_score_diff_threshold: float = 0.0
    calibration_examples: int | None = Field(
        None,
        ge=1,
        description="hold N questions of whole train articles out of training and calibrate "
        "null_score_diff_threshold on them each evaluation, instead of using the fixed value",
    )

    gradient_accumulation_steps: int = Field(1, ge=1)
    amp: bool = Field(True, description="mixed precision (fp16) on CUDA; ignored on CPU")
    device: str | None = Field(None, description="cpu, cuda, cuda:N or auto; None: the worker's context.device")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads per trial; cores / parallel_bandwidth keeps parallel trials from oversubscribing"
    )
    memory_limit_mb: float | None = Field(None, gt=0, description="refuse configs estimated above this (CPU too)")
    latency_repeats: int = Field(20, ge=1)
    cache_dir: str = ".cache/bert"
    seed: int = 0
    save_model: bool = Field(False, description="also write the trained student to the trial's artifact_dir")

    @model_validator(mode="after")
    def _check_split(self) -> TrialSettings:
        if self.eval_data is None and self.eval_articles is None and self.eval_fraction is None:
            raise ValueError(
                "eval_data is not given, so the eval articles must be carved out of train_data: "
                "set eval_articles (titles or a count) or eval_fraction"
            )
        if self.teacher_train_examples is not None and not self.teacher_finetune:
            raise ValueError("teacher_train_examples sizes the teacher's fine-tune: set teacher_finetune: true, or drop it")
        if self.eval_articles is not None and self.eval_fraction is not None:
            raise ValueError("set only one of eval_articles and eval_fraction")
        if self.doc_stride >= self.max_seq_length - self.max_query_length - 3:
            raise ValueError(
                f"doc_stride ({self.doc_stride}) must be smaller than max_seq_length - max_query_length - 3 "
                f"({self.max_seq_length - self.max_query_length - 3}): lower doc_stride or max_query_length"
            )
        return self

    @classmethod
    def from_mapping(cls, settings: dict[str, Any]) -> TrialSettings:
        return _validated(cls, settings, "metadata.trial settings")


class StudentAssignments(BaseModel):
    """The tuned knobs of one trial; a knob the experiment does not tune keeps its default here."""

    model_config = _STRICT

    learning_rate: float = Field(5.0e-5, gt=0)
    adam_epsilon: float = Field(1.0e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    beta_1: float = Field(0.9, ge=0, lt=1)
    beta_2: float = Field(0.999, ge=0, lt=1)
    alpha_ce: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)
    initializer_range: float = Field(0.02, ge=0)
    dropout: float = Field(0.1, ge=0, le=1)
    attention_dropout: float = Field(0.1, ge=0, le=1)
    qa_dropout: float = Field(0.1, ge=0, le=1)
    warm_up_steps: int = Field(0, ge=0)
    n_layers: int | None = Field(None, ge=1, description="None: as many as the student base has")
    n_heads: int | None = Field(None, ge=1, description="None: as many as the student base has")
    pruning_seed: int = 1
    train_batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    layer_init: Literal["every_k", "first", "last"] = "first"
    optimizer: Literal["adamw", "sgd"] = "adamw"

    @classmethod
    def from_mapping(cls, assignments: dict[str, Any]) -> StudentAssignments:
        return _validated(cls, assignments, "trial assignments")

    def clamped_dropouts(self) -> dict[str, float]:
        return {
            name: min(getattr(self, name), MAX_DROPOUT) for name in ("dropout", "attention_dropout", "qa_dropout")
        }


def resolve_model_path(name: str) -> str:
    """A hub name or folder as given; `python:<module>` asks that module's get_model_path()."""
    if not name.startswith(PYTHON_PACKAGE_PREFIX):
        return name
    module_name = name[len(PYTHON_PACKAGE_PREFIX) :]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"model {name!r}: cannot import {module_name!r} ({error}); install that package") from None
    if not hasattr(module, "get_model_path"):
        raise ValueError(f"model {name!r}: module {module_name!r} has no get_model_path()")
    return str(module.get_model_path())


Model = TypeVar("Model", bound=BaseModel)


def _validated(model: type[Model], data: dict[str, Any], what: str) -> Model:
    """`data` as `model`, or a ValueError listing each invalid field of `what`."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"invalid {what}:\n{_describe(error)}") from None


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)

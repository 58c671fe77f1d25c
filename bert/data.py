"""The data a trial trains and evaluates on: split, sliced and tokenized, all from caches."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import datasets
from transformers import PreTrainedTokenizerFast

from paretune.bert.settings import TrainQuestions, TrialSettings, resolve_model_path
from paretune.terminal import quiet_model_loading
from paretune.bert.squad import (
    FeatureLengths,
    answerable_questions,
    hold_out_articles,
    load_squad,
    load_tokenizer,
    split_by_article,
    take_examples,
    tokenize_squad,
)


class SquadSplits(NamedTuple):
    train: datasets.Dataset
    evaluation: datasets.Dataset
    calibration: datasets.Dataset | None
    teacher_train: datasets.Dataset | None = None  # None: the teacher fine-tunes on `train`


@dataclass
class SquadData:
    train_examples: datasets.Dataset
    eval_examples: datasets.Dataset
    train_features: datasets.Dataset
    eval_features: datasets.Dataset
    tokenizer: PreTrainedTokenizerFast
    calibration_examples: datasets.Dataset | None = None
    calibration_features: datasets.Dataset | None = None
    teacher_train_features: datasets.Dataset | None = None

    @property
    def teacher_features(self) -> datasets.Dataset:
        """The windows a fine-tuned teacher learns from (its own slice, else the students')."""
        return self.train_features if self.teacher_train_features is None else self.teacher_train_features


def load_splits(
    train_data: str | Sequence[str],
    train_split: str = "train",
    eval_data: str | Sequence[str] | None = None,
    eval_split: str = "validation",
    eval_articles: Sequence[str] | int | None = None,
    eval_fraction: float | None = None,
    split_seed: int = 0,
    max_train_examples: int | None = None,
    max_eval_examples: int | None = None,
    calibration_examples: int | None = None,
    train_questions: TrainQuestions = "all",
    teacher_train_examples: int | None = None,
) -> SquadSplits:
    """Train and eval questions (two sources, or one source split by article), then sliced;
    with `calibration_examples`, that many train questions from whole articles held out of
    training; with `train_questions="answerable"`, only the answerable ones train (the slices
    count those); with `teacher_train_examples`, the teacher's own slice of the same questions."""
    train = load_squad(train_data, train_split)
    if eval_data is None:
        train, evaluation = split_by_article(train, eval_articles, eval_fraction, split_seed)
    else:
        evaluation = load_squad(eval_data, eval_split)
    calibration = None
    if calibration_examples is not None:
        train, calibration = hold_out_articles(train, calibration_examples)
    if train_questions == "answerable":
        train = answerable_questions(train)
    return SquadSplits(
        take_examples(train, max_train_examples),
        take_examples(evaluation, max_eval_examples),
        calibration,
        None if teacher_train_examples is None else take_examples(train, teacher_train_examples),
    )


def tokenizer_name(settings: TrialSettings) -> str:
    """Teacher and student read the same windows, so the teacher's tokenizer is the default."""
    return resolve_model_path(settings.tokenizer or settings.teacher)


def feature_lengths(settings: TrialSettings) -> FeatureLengths:
    return FeatureLengths(settings.max_seq_length, settings.doc_stride, settings.max_query_length)


def load_settings_splits(settings: TrialSettings) -> SquadSplits:
    """The train, eval and calibration questions the settings name. Kept per process, keyed by
    those settings and the data files' size and modification time: a Dask worker runs trial after
    trial on the same questions, and splitting them again costs seconds each time."""
    arguments = (
        _hashable(settings.train_data),
        settings.train_split,
        _hashable(settings.eval_data),
        settings.eval_split,
        _hashable(settings.eval_articles),
        settings.eval_fraction,
        settings.split_seed,
        settings.max_train_examples,
        settings.max_eval_examples,
        settings.calibration_examples,
        settings.train_questions,
        settings.teacher_train_examples,
    )
    return _cached_splits(arguments, _file_versions(settings.train_data, settings.eval_data))


@functools.lru_cache(maxsize=2)
def _cached_splits(arguments: tuple, file_versions: tuple) -> SquadSplits:
    return load_splits(*arguments)


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _file_versions(*sources: str | Sequence[str] | None) -> tuple:
    """(path, size, modification time) of each local data file: an edited file is read again."""
    paths = [p for source in sources if source for p in ([source] if isinstance(source, str) else source)]
    return tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths if os.path.isfile(p))


def prepare_squad_data(settings: TrialSettings) -> SquadData:
    """A trial's data, first thing in its process: so transformers' loading noise is off for the
    models the trial loads next (see `paretune.terminal.quiet_model_loading`)."""
    quiet_model_loading()
    splits = load_settings_splits(settings)
    tokenizer = load_tokenizer(tokenizer_name(settings))
    lengths = feature_lengths(settings)
    cache_dir = Path(settings.cache_dir)
    return SquadData(
        train_examples=splits.train,
        eval_examples=splits.evaluation,
        train_features=tokenize_squad(splits.train, tokenizer, lengths, "train", cache_dir),
        eval_features=tokenize_squad(splits.evaluation, tokenizer, lengths, "eval", cache_dir),
        tokenizer=tokenizer,
        calibration_examples=splits.calibration,
        calibration_features=(
            None if splits.calibration is None else tokenize_squad(splits.calibration, tokenizer, lengths, "eval", cache_dir)
        ),
        teacher_train_features=(
            None if splits.teacher_train is None
            else tokenize_squad(splits.teacher_train, tokenizer, lengths, "train", cache_dir)
        ),
    )

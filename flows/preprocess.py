"""Prepare SQuAD 2.0 for an experiment once, before its trials: split, tokenize, teacher logits.

Everything lands in the same on-disk caches the trials read (`bert.squad.tokenize_squad`,
`bert.teacher`), keyed the same way, so after this flow a trial with matching `metadata.trial`
settings only loads. Run it as the `preprocess-squad` deployment or
`python -m paretune.flows.preprocess [--settings-from experiments/bert_squad2_cpu.yaml]`. Its defaults are
the demo experiment's (`experiments/bert_squad2_demo.yaml`): the SQuAD 2.0 dev set in the shared
folder beside the repository, split by article, and the MiniLM-L6 teacher fine-tuned once, i.e.
what `make demo` trains on, offline.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import datasets
import yaml
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, create_model

from paretune.bert.data import SquadSplits, feature_lengths, load_settings_splits, tokenizer_name
from paretune.bert.settings import HUB_TEACHER, TrialSettings
from paretune.bert.squad import load_tokenizer, tokenize_squad
from paretune.bert.teacher import prepare_teacher, teacher_logits
from paretune.bert.training import resolve_device

DEFAULT_EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "bert_squad2_demo.yaml"


# The data-side subset of `metadata.trial` (bert.settings.TrialSettings): same names, types,
# defaults and bounds, taken from TrialSettings itself. Two differ on purpose: with no worker to
# ask, `device` defaults to auto; an empty `teacher` skips the teacher's logits.
PREPROCESS_FIELDS = (
    "train_data", "train_split", "eval_data", "eval_split", "eval_articles", "eval_fraction", "split_seed",
    "max_train_examples", "max_eval_examples", "train_questions", "calibration_examples", "tokenizer",
    "max_seq_length", "doc_stride", "max_query_length", "cache_dir", "teacher", "teacher_finetune", "teacher_epochs",
    "teacher_learning_rate", "teacher_batch_size", "teacher_train_examples", "teacher_no_answer_share", "seed", "amp",
    "device",
)
PREPROCESS_OVERRIDES: dict[str, Any] = {
    "teacher": (str | None, Field(HUB_TEACHER, description="compute its logits over the train windows; empty: skip")),
    "device": (str, Field("auto", description="cpu, cuda, cuda:N or auto")),
}
_PreprocessFields = create_model(
    "_PreprocessFields", __config__=ConfigDict(extra="forbid"),
    **{name: PREPROCESS_OVERRIDES.get(name) or (TrialSettings.model_fields[name].annotation,
                                                 TrialSettings.model_fields[name]) for name in PREPROCESS_FIELDS},
)


class PreprocessParameters(_PreprocessFields):  # type: ignore[misc,valid-type]
    """What the preprocess flow prepares: the data-side subset of an experiment's `metadata.trial`."""

    def trial_settings(self) -> TrialSettings:
        """The trial settings these parameters stand for, so cache keys agree with the trials'."""
        fields = self.model_dump(exclude={"teacher"})
        return TrialSettings.from_mapping({**fields, "teacher": self.teacher or HUB_TEACHER})

    @classmethod
    def from_trial_settings(cls, trial: dict) -> PreprocessParameters:
        """The data-side subset of an experiment's `metadata.trial` (the other knobs are the trials')."""
        return cls.model_validate({name: value for name, value in trial.items() if name in cls.model_fields})

    @classmethod
    def from_experiment(cls, spec_path: str | Path) -> PreprocessParameters:
        """The parameters an experiment file's `metadata.trial` implies."""
        return cls.from_trial_settings((yaml.safe_load(Path(spec_path).read_text()).get("metadata") or {}).get("trial") or {})


class PreprocessResult(BaseModel):
    cache_dir: str
    train_examples: int
    eval_examples: int
    train_features: str
    eval_features: str
    teacher: str | None = None
    teacher_logits: str | None = None


@task(name="load-squad-splits", cache_policy=NO_CACHE)
def load_squad_splits(parameters: PreprocessParameters) -> SquadSplits:
    return load_settings_splits(parameters.trial_settings())


@task(name="tokenize-squad", cache_policy=NO_CACHE)
def tokenize_split(dataset: datasets.Dataset, kind: str, parameters: PreprocessParameters) -> datasets.Dataset:
    settings = parameters.trial_settings()
    tokenizer = load_tokenizer(tokenizer_name(settings))
    return tokenize_squad(dataset, tokenizer, feature_lengths(settings), kind, settings.cache_dir)


@task(name="prepare-teacher", cache_policy=NO_CACHE)
def prepare_teacher_model(train_features: datasets.Dataset, parameters: PreprocessParameters) -> str:
    return prepare_teacher(parameters.trial_settings(), train_features, resolve_device(parameters.device))


@task(name="teacher-logits", cache_policy=NO_CACHE)
def compute_teacher_logits(teacher: str, train_features: datasets.Dataset, parameters: PreprocessParameters) -> str:
    start_logits, _ = teacher_logits(
        teacher, train_features, parameters.cache_dir, resolve_device(parameters.device), parameters.amp
    )
    return str(Path(start_logits.filename).parent)


def _cache_folder(features: datasets.Dataset) -> str:
    return str(Path(features.cache_files[0]["filename"]).parent)


@flow(name="preprocess-squad")
def preprocess_squad(
    parameters: PreprocessParameters = PreprocessParameters.from_experiment(DEFAULT_EXPERIMENT),
) -> PreprocessResult:
    """Load and split SQuAD 2.0 by article, tokenize both sides into cached windows, and, given a
    teacher, prepare it and cache its logits over the train windows (defaults: the demo's data)."""
    logger = get_run_logger()
    splits = load_squad_splits(parameters)
    train_examples, eval_examples = splits.train, splits.evaluation
    train_features = tokenize_split(train_examples, "train", parameters)
    eval_features = tokenize_split(eval_examples, "eval", parameters)
    if splits.calibration is not None:
        tokenize_split(splits.calibration, "eval", parameters)
    result = PreprocessResult(
        cache_dir=parameters.cache_dir,
        train_examples=len(train_examples),
        eval_examples=len(eval_examples),
        train_features=_cache_folder(train_features),
        eval_features=_cache_folder(eval_features),
    )
    if parameters.teacher:
        teacher_features = train_features
        if splits.teacher_train is not None:
            teacher_features = tokenize_split(splits.teacher_train, "train", parameters)
        result.teacher = prepare_teacher_model(teacher_features, parameters)
        result.teacher_logits = compute_teacher_logits(result.teacher, train_features, parameters)
    logger.info(
        "%d train questions -> %d windows, %d eval questions -> %d windows, cached under %s",
        len(train_examples), len(train_features), len(eval_examples), len(eval_features), parameters.cache_dir,
    )
    return result


def main(argv: list[str] | None = None, prog: str = "python -m paretune.flows.preprocess") -> PreprocessResult:
    from paretune.flows.local_prefect import prefect_api

    parser = argparse.ArgumentParser(prog=prog, description=preprocess_squad.__doc__)
    parser.add_argument(
        "--settings-from", metavar="SPEC", default=str(DEFAULT_EXPERIMENT),
        help="experiment file whose metadata.trial to prepare for (default: the demo's, %(default)s)",
    )
    args = parser.parse_args(argv)
    with prefect_api():
        result = preprocess_squad(PreprocessParameters.from_experiment(args.settings_from))
    print(result.model_dump_json(indent=2))
    return result


if __name__ == "__main__":
    main()

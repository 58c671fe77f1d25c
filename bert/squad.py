"""SQuAD 2.0 as `datasets.Dataset`s: loading, splitting by article, and cached features.

One row per question (id, title, context, question, answers{text, answer_start}), the layout
of the hub's `squad_v2`. Features are the overlapping windows of transformers'
`examples/pytorch/question-answering/run_qa.py`, plus run_squad's `max_query_length`, and are
cached on disk so trials of one experiment tokenize once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import datasets
import fsspec
from filelock import FileLock
from transformers import AutoTokenizer, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

HUB_DATASET = "squad_v2"
FEATURES_FORMAT_VERSION = 1

SQUAD_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": datasets.Sequence(
            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
        ),
    }
)

FeatureKind = Literal["train", "eval"]


@dataclass(frozen=True)
class FeatureLengths:
    """Window geometry: tokens per window, overlap stride, and the cap on question tokens."""

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64


# Loading


def is_json_source(source: str) -> bool:
    return source.endswith(".json")


def read_squad_json(url: str) -> dict[str, Any]:
    """A SQuAD-format JSON file from a local path or any fsspec URL (s3://, memory://, ...)."""
    with fsspec.open(url, "r", encoding="utf-8") as handle:
        squad_json = json.load(handle)
    if not isinstance(squad_json, dict) or "data" not in squad_json:
        raise ValueError(f"{url}: not SQuAD format (expected an object with a `data` list of articles)")
    return squad_json


def squad_json_to_dataset(squad_json: dict[str, Any]) -> datasets.Dataset:
    """Flatten articles → paragraphs → questions into one row per question."""
    rows: dict[str, list[Any]] = {name: [] for name in SQUAD_FEATURES}
    for article in squad_json["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                rows["id"].append(qa["id"])
                rows["title"].append(article.get("title", ""))
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append(
                    {
                        "text": [answer["text"] for answer in qa["answers"]],
                        "answer_start": [answer["answer_start"] for answer in qa["answers"]],
                    }
                )
    return datasets.Dataset.from_dict(rows, features=SQUAD_FEATURES)


def load_squad(source: str | Sequence[str], split: str = "validation") -> datasets.Dataset:
    """SQuAD 2.0 questions from the hub (a dataset name, e.g. `squad_v2`) or SQuAD JSON file(s).

    A source ending in `.json` is a file (local path or fsspec URL such as ``s3://bucket/dev.json``);
    any other string names a hub dataset and `split` picks its split. Several sources are
    concatenated in order.
    """
    if not isinstance(source, str):
        if not source:
            raise ValueError("no data source given: pass a hub dataset name or SQuAD JSON path(s)")
        return datasets.concatenate_datasets([load_squad(one, split) for one in source])
    if is_json_source(source):
        return squad_json_to_dataset(read_squad_json(source))
    return datasets.load_dataset(source, split=split).cast(SQUAD_FEATURES)


def dataset_to_squad_json(dataset: datasets.Dataset) -> dict[str, Any]:
    """Back to the nested SQuAD layout that the official metric reads (articles and paragraphs kept in order)."""
    articles: dict[str, dict[str, dict[str, Any]]] = {}
    for row in dataset:
        paragraphs = articles.setdefault(row["title"], {})
        paragraph = paragraphs.setdefault(row["context"], {"context": row["context"], "qas": []})
        answers = [
            {"text": text, "answer_start": start}
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"])
        ]
        paragraph["qas"].append({"id": row["id"], "question": row["question"], "answers": answers})
    return {
        "version": "v2.0",
        "data": [{"title": title, "paragraphs": list(paragraphs.values())} for title, paragraphs in articles.items()],
    }


# Splitting


def split_by_article(
    dataset_or_json: datasets.Dataset | dict[str, Any] | str,
    eval_articles: Sequence[str] | int | None = None,
    eval_fraction: float | None = None,
    seed: int = 0,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, eval) with every article wholly on one side, so no eval text is trained on.

    `eval_articles` names the eval articles by title, or gives how many to draw at random
    (with `seed`); `eval_fraction` draws that share of the articles instead.
    """
    if isinstance(dataset_or_json, str):
        dataset = load_squad(dataset_or_json)
    elif isinstance(dataset_or_json, dict):
        dataset = squad_json_to_dataset(dataset_or_json)
    else:
        dataset = dataset_or_json
    titles = list(dict.fromkeys(dataset["title"]))
    chosen = _choose_eval_titles(titles, eval_articles, eval_fraction, seed)
    row_titles = dataset["title"]
    train_rows = [i for i, title in enumerate(row_titles) if title not in chosen]
    eval_rows = [i for i, title in enumerate(row_titles) if title in chosen]
    return dataset.select(train_rows), dataset.select(eval_rows)


def _choose_eval_titles(
    titles: list[str], eval_articles: Sequence[str] | int | None, eval_fraction: float | None, seed: int
) -> set[str]:
    if (eval_articles is None) == (eval_fraction is None):
        raise ValueError("split_by_article: give exactly one of eval_articles (titles or a count) and eval_fraction")
    if isinstance(eval_articles, int):
        count = eval_articles
    elif eval_fraction is not None:
        if not 0 < eval_fraction < 1:
            raise ValueError(f"split_by_article: eval_fraction must be in (0, 1), got {eval_fraction}")
        count = max(1, round(eval_fraction * len(titles)))
    else:
        unknown = sorted(set(eval_articles) - set(titles))
        if unknown:
            raise ValueError(f"split_by_article: eval_articles {unknown} are not articles of the data; titles: {titles}")
        return set(eval_articles)
    if not 1 <= count < len(titles):
        raise ValueError(
            f"split_by_article: asked for {count} eval articles out of {len(titles)}; "
            "both sides need at least one article"
        )
    return set(random.Random(seed).sample(sorted(titles), count))


def hold_out_articles(dataset: datasets.Dataset, questions: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(rest, held_out): whole articles taken from the end of `dataset` until they hold at least
    `questions` questions, of which the first `questions` are held out. What the null-score
    threshold is calibrated on must not be trained on: a model is surer of answers it has seen."""
    row_titles = dataset["title"]
    titles = list(dict.fromkeys(row_titles))
    counts = Counter(row_titles)
    held_titles: set[str] = set()
    for title in reversed(titles[1:]):
        held_titles.add(title)
        if sum(counts[held] for held in held_titles) >= questions:
            break
    else:
        raise ValueError(
            f"calibration_examples: {questions} questions would take every train article "
            f"({len(dataset)} questions in {len(titles)} articles); ask for fewer"
        )
    rest = [i for i, title in enumerate(row_titles) if title not in held_titles]
    held = [i for i, title in enumerate(row_titles) if title in held_titles]
    return dataset.select(rest), dataset.select(held[:questions])


def answerable_questions(dataset: datasets.Dataset) -> datasets.Dataset:
    """The questions that have an answer, in order (SQuAD 1.1's kind of question)."""
    return dataset.select([i for i, answers in enumerate(dataset["answers"]) if answers["text"]])


def take_examples(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    """The first `limit` questions (all when None): small, reproducible slices for CPU runs."""
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.select(range(limit))


# Tokenization


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer {name_or_path!r} is not a fast tokenizer; offsets mapping needs one")
    return tokenizer


def truncate_questions(
    questions: list[str], tokenizer: PreTrainedTokenizerFast, max_query_length: int
) -> list[str]:
    """Strip leading spaces (run_qa) and cut questions to `max_query_length` tokens (run_squad)."""
    questions = [question.lstrip() for question in questions]
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    truncated = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        if len(offsets) > max_query_length:
            question = question[: offsets[max_query_length - 1][1]]
        truncated.append(question)
    return truncated


def _tokenize_windows(examples: dict[str, list], tokenizer: PreTrainedTokenizerFast, lengths: FeatureLengths):
    pad_on_right = tokenizer.padding_side == "right"
    questions = truncate_questions(examples["question"], tokenizer, lengths.max_query_length)
    contexts = examples["context"]
    return tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=lengths.max_seq_length,
        stride=lengths.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )


def cls_index_of(input_ids: list[int], tokenizer: PreTrainedTokenizerFast) -> int:
    """Where a window points for "no answer in here"."""
    if tokenizer.cls_token_id in input_ids:
        return input_ids.index(tokenizer.cls_token_id)
    if tokenizer.bos_token_id in input_ids:
        return input_ids.index(tokenizer.bos_token_id)
    return 0


def prepare_train_features(
    examples: dict[str, list], tokenizer: PreTrainedTokenizerFast, lengths: FeatureLengths
) -> dict[str, list]:
    """Windows with `start_positions`/`end_positions`: the answer's tokens, or CLS when the
    question has no answer or its answer is not wholly inside the window."""
    tokenized = _tokenize_windows(examples, tokenizer, lengths)
    context_id = 1 if tokenizer.padding_side == "right" else 0
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"] = []
    tokenized["end_positions"] = []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = cls_index_of(input_ids, tokenizer)
        sequence_ids = tokenized.sequence_ids(i)
        answers = examples["answers"][sample_mapping[i]]
        if len(answers["answer_start"]) == 0:
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        token_start = 0
        while sequence_ids[token_start] != context_id:
            token_start += 1
        token_end = len(input_ids) - 1
        while sequence_ids[token_end] != context_id:
            token_end -= 1
        if not (offsets[token_start][0] <= start_char and offsets[token_end][1] >= end_char):
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
            continue
        while token_start < len(offsets) and offsets[token_start][0] <= start_char:
            token_start += 1
        tokenized["start_positions"].append(token_start - 1)
        while offsets[token_end][1] >= end_char:
            token_end -= 1
        tokenized["end_positions"].append(token_end + 1)
    return tokenized


def prepare_validation_features(
    examples: dict[str, list], tokenizer: PreTrainedTokenizerFast, lengths: FeatureLengths
) -> dict[str, list]:
    """Windows with `example_id` and an `offset_mapping` that is None outside the context,
    which is what post-processing needs to turn logits back into context text."""
    tokenized = _tokenize_windows(examples, tokenizer, lengths)
    context_id = 1 if tokenizer.padding_side == "right" else 0
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    tokenized["example_id"] = []
    for i in range(len(tokenized["input_ids"])):
        sequence_ids = tokenized.sequence_ids(i)
        tokenized["example_id"].append(examples["id"][sample_mapping[i]])
        tokenized["offset_mapping"][i] = [
            offset if sequence_ids[k] == context_id else None
            for k, offset in enumerate(tokenized["offset_mapping"][i])
        ]
    return tokenized


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """Hash of everything that decides the tokens: vocabulary, normalizer, specials, padding side.

    The backend's `truncation` and `padding` entries are left out: each call sets them, so they
    tell the last call's arguments, not the tokenizer.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode("utf-8"))
    digest.update(tokenizer.padding_side.encode("utf-8"))
    return digest.hexdigest()[:16]


def features_cache_key(
    dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerFast, lengths: FeatureLengths, kind: FeatureKind
) -> str:
    parts = {
        "format": FEATURES_FORMAT_VERSION,
        "kind": kind,
        "tokenizer": tokenizer.name_or_path,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "lengths": [lengths.max_seq_length, lengths.doc_stride, lengths.max_query_length],
        "data": dataset._fingerprint,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:20]


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """datasets' progress bars off for the block, as they were after it."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def tokenize_squad(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    lengths: FeatureLengths,
    kind: FeatureKind,
    cache_dir: str | Path,
) -> datasets.Dataset:
    """Features for `dataset`, from `cache_dir/features/<key>` when an earlier call made them.

    The key covers the tokenizer (name and vocabulary hash), the window lengths, the kind and the
    data's fingerprint. Concurrent trials on one machine build it once (a file lock) and the
    folder appears atomically, so a reader never sees half a cache.
    """
    key = features_cache_key(dataset, tokenizer, lengths, kind)
    folder = Path(cache_dir) / "features" / f"{kind}-{key}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if folder.exists():
            logger.info("features cache hit: %s", folder)
            return datasets.load_from_disk(str(folder))
        prepare = prepare_train_features if kind == "train" else prepare_validation_features
        features = dataset.map(
            prepare,
            batched=True,
            remove_columns=dataset.column_names,
            fn_kwargs={"tokenizer": tokenizer, "lengths": lengths},
            desc=f"tokenizing {kind} windows",
        )
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with no_progress_bars():  # the tokenizing bar above is the step's progress; saving is instant
            features.save_to_disk(str(staging))
        staging.rename(folder)
        logger.info("features cached: %s (%d windows)", folder, len(features))
    return datasets.load_from_disk(str(folder))

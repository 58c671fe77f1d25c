"""The SQuAD 2.0 metric against the official script's published numbers and its CLI output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bert_fixtures import shared_squad_file

from paretune.bert import evaluate as evaluate_cli
from paretune.bert.metrics import (
    answerable_evaluate,
    answerable_subset,
    compute_exact,
    compute_f1,
    find_best_thresh,
    normalize_answer,
    squad_v2_evaluate,
)

# The README of the shared data: official evaluate-v2.0.py on these files.
OFFICIAL_SCORES = [
    ("bert-large", "dev-v2.0.json", 78.74168280973637, 81.77528052374723, 74.10593792172739, 80.18183293833508, 83.36417157275021),
    ("bidaf-self-attention-elmo", "dev-v2.0.json", 65.70369746483618, 67.87648921451334, 61.42037786774629, 65.77219238257676, 69.97476871320437),
    ("nlnet", "dev-v2.0.json", 75.82750779078582, 78.77776770381462, 69.61875843454791, 75.52773885752187, 82.01850294365012),
    ("bert-large", "dev-v2.0-16articles-exact.json", 78.97334649555775, 81.82635533198284, 75.39518900343643, 81.35415385147485, 82.26010101010101),
]
KEYS = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1", "NoAns_total"]


def _load(data_name: str, predictions_name: str) -> tuple[list, dict]:
    data = json.loads(shared_squad_file(data_name).read_text())["data"]
    predictions = json.loads(shared_squad_file(f"predictions/{predictions_name}.json").read_text())
    return data, predictions


@pytest.mark.parametrize("predictions_name,data_name,exact,f1,has_exact,has_f1,no_exact", OFFICIAL_SCORES)
def test_reproduces_the_official_scores(predictions_name, data_name, exact, f1, has_exact, has_f1, no_exact):
    data, predictions = _load(data_name, predictions_name)
    scores = squad_v2_evaluate(data, predictions)
    assert list(scores) == KEYS
    assert scores["exact"] == pytest.approx(exact, abs=1e-9)
    assert scores["f1"] == pytest.approx(f1, abs=1e-9)
    assert scores["HasAns_exact"] == pytest.approx(has_exact, abs=1e-9)
    assert scores["HasAns_f1"] == pytest.approx(has_f1, abs=1e-9)
    assert scores["NoAns_exact"] == pytest.approx(no_exact, abs=1e-9)
    assert scores["NoAns_f1"] == scores["NoAns_exact"]


@pytest.mark.parametrize("predictions_name,data_name,exact,f1,has_exact,has_f1,no_exact", OFFICIAL_SCORES)
def test_the_answerable_only_evaluation_gives_the_official_hasans_figures(
    predictions_name, data_name, exact, f1, has_exact, has_f1, no_exact
):
    data, predictions = _load(data_name, predictions_name)
    scores = answerable_evaluate(data, predictions)
    assert scores["HasAns_exact"] == pytest.approx(has_exact, abs=1e-9)
    assert scores["HasAns_f1"] == pytest.approx(has_f1, abs=1e-9)
    assert scores["HasAns_total"] == squad_v2_evaluate(data, predictions)["HasAns_total"]
    # Only the answerable questions' predictions are read.
    answerable_ids = {qa["id"] for article in answerable_subset(data) for p in article["paragraphs"] for qa in p["qas"]}
    assert answerable_evaluate(data, {qid: predictions[qid] for qid in answerable_ids}) == scores


def test_the_answerable_only_evaluation_scores_extraction_and_needs_an_answerable_question():
    data = _tiny_data()
    scores = answerable_evaluate(data, {"a": "Eiffel Tower", "b": "in Paris", "n": "anything"})
    assert (scores["HasAns_exact"], scores["HasAns_f1"], scores["HasAns_total"]) == (100.0, 100.0, 2)
    # An empty answer to an answerable question is simply wrong: answers are meant to be always given.
    assert answerable_evaluate(data, {"a": "", "b": "Paris"})["HasAns_exact"] == 50.0
    unanswerable_only = [{"title": "t", "paragraphs": [{"context": "c", "qas": [data[0]["paragraphs"][0]["qas"][2]]}]}]
    assert answerable_subset(unanswerable_only) == []
    with pytest.raises(ValueError, match="no answerable question"):
        answerable_evaluate(unanswerable_only, {"n": ""})
    with pytest.raises(ValueError, match=r"\(b\)"):
        answerable_evaluate(data, {"a": "Eiffel Tower"})


def test_cli_prints_the_official_json():
    data = shared_squad_file("dev-v2.0-16articles-exact.json")
    predictions = shared_squad_file("predictions/bert-large.json")
    completed = subprocess.run(
        [sys.executable, "-m", "paretune.bert.evaluate", str(data), str(predictions)], capture_output=True, text=True, check=True
    )
    printed = json.loads(completed.stdout)
    assert list(printed) == KEYS
    assert printed["exact"] == pytest.approx(78.97334649555775, abs=1e-9)
    assert printed["f1"] == pytest.approx(81.82635533198284, abs=1e-9)
    assert printed["total"] == 6078
    assert completed.stdout == json.dumps(printed, indent=2) + "\n"


def _tiny_data() -> list:
    def qa(qid, answers):
        return {"id": qid, "question": "?", "answers": [{"text": text, "answer_start": 0} for text in answers]}

    return [
        {
            "title": "t",
            "paragraphs": [
                {"context": "c", "qas": [qa("a", ["the Eiffel Tower"]), qa("b", ["Paris", "in Paris"]), qa("n", [])]}
            ],
        }
    ]


def test_na_prob_file_adds_best_thresholds_and_out_file(tmp_path, capsys):
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps({"data": _tiny_data()}))
    (tmp_path / "pred.json").write_text(json.dumps({"a": "Eiffel Tower", "b": "London", "n": "Rome"}))
    (tmp_path / "na.json").write_text(json.dumps({"a": 0.1, "b": 0.7, "n": 0.9}))
    scores = evaluate_cli.main(
        [str(data_file), str(tmp_path / "pred.json"), "--na-prob-file", str(tmp_path / "na.json"), "--out-file", str(tmp_path / "eval.json")]
    )
    assert capsys.readouterr().out == ""
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written == scores
    assert list(written)[-4:] == ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]
    # Answering "" above 0.1 keeps "a" right and turns "n" right: 2 of 3.
    assert written["exact"] == pytest.approx(100 / 3)
    assert written["best_exact"] == pytest.approx(200 / 3)
    assert written["best_exact_thresh"] == 0.1


def test_na_prob_thresh_turns_confident_no_answers_into_empty(tmp_path):
    data = _tiny_data()
    predictions = {"a": "Eiffel Tower", "b": "London", "n": "Rome"}
    scores = squad_v2_evaluate(data, predictions, {"a": 0.1, "b": 0.7, "n": 0.9}, na_prob_thresh=0.5)
    assert scores["exact"] == pytest.approx(200 / 3)  # "a" right, "b" wrong either way, "n" now right
    assert scores["NoAns_exact"] == 100.0


def test_missing_predictions_are_named_and_fail(tmp_path, capsys):
    (tmp_path / "data.json").write_text(json.dumps({"data": _tiny_data()}))
    (tmp_path / "pred.json").write_text(json.dumps({"a": "Eiffel Tower", "n": ""}))
    with pytest.raises(SystemExit, match="1 questions"):
        evaluate_cli.main([str(tmp_path / "data.json"), str(tmp_path / "pred.json")])
    assert capsys.readouterr().out == "Missing prediction for b\n"
    with pytest.raises(ValueError, match=r"\(b\)"):
        squad_v2_evaluate(_tiny_data(), {"a": "Eiffel Tower", "n": ""})


def test_normalization_and_token_f1():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert compute_exact("the Eiffel Tower", "Eiffel tower.") == 1
    assert compute_f1("in Paris France", "Paris") == pytest.approx(0.5)
    assert compute_f1("", "") == 1 and compute_f1("", "Paris") == 0 and compute_f1("Paris", "London") == 0


def test_best_threshold_counts_no_answers_when_no_question_is_answered():
    predictions = {"a": "x", "n": ""}
    best, thresh = find_best_thresh(predictions, {"a": 0, "n": 1}, {"a": 0.2, "n": 0.4}, {"a": True, "n": False})
    assert (best, thresh) == (50.0, 0.0)

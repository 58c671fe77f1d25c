"""The official SQuAD 2.0 evaluation, as functions.

Same arithmetic, in the same order, as the official `evaluate-v2.0.py` (Rajpurkar, Jia and
Liang, 2018), so scores agree with the leaderboard's to the last bit. `dataset` is the
`data` list of a SQuAD-format JSON file; `predictions` maps question id -> answer text ("" for
no answer); `na_probs` maps question id -> a score that grows with the model's belief that the
question has no answer.

`answerable_evaluate` is the CPU-scale family: the same official code on the answerable
questions only (SQuAD 1.1-style), which gives the official script's `HasAns_exact` / `HasAns_f1`.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any, Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(_ARTICLES, " ", text)
    return " ".join(text.split())


def get_tokens(text: str) -> list[str]:
    if not text:
        return []
    return normalize_answer(text).split()


def compute_exact(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold: str, prediction: str) -> float:
    gold_tokens = get_tokens(gold)
    predicted_tokens = get_tokens(prediction)
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    num_same = sum(common.values())
    if len(gold_tokens) == 0 or len(predicted_tokens) == 0:
        # A no-answer scores 1 only against a no-answer.
        return int(gold_tokens == predicted_tokens)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(predicted_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def iter_questions(dataset: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def make_qid_to_has_ans(dataset: list[dict[str, Any]]) -> dict[str, bool]:
    return {qa["id"]: bool(qa["answers"]) for qa in iter_questions(dataset)}


def get_raw_scores(
    dataset: list[dict[str, Any]], predictions: dict[str, str]
) -> tuple[dict[str, int], dict[str, float]]:
    """Exact and F1 per predicted question id, each the max over its gold answers."""
    exact_scores: dict[str, int] = {}
    f1_scores: dict[str, float] = {}
    for qa in iter_questions(dataset):
        qid = qa["id"]
        gold_answers = [answer["text"] for answer in qa["answers"] if normalize_answer(answer["text"])]
        if not gold_answers:
            # For unanswerable questions the only correct answer is the empty string.
            gold_answers = [""]
        prediction = predictions[qid]
        exact_scores[qid] = max(compute_exact(gold, prediction) for gold in gold_answers)
        f1_scores[qid] = max(compute_f1(gold, prediction) for gold in gold_answers)
    return exact_scores, f1_scores


def apply_no_ans_threshold(
    scores: dict[str, float],
    na_probs: dict[str, float],
    qid_to_has_ans: dict[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    thresholded: dict[str, float] = {}
    for qid, score in scores.items():
        if na_probs[qid] > na_prob_thresh:
            thresholded[qid] = float(not qid_to_has_ans[qid])
        else:
            thresholded[qid] = score
    return thresholded


def make_eval_dict(
    exact_scores: dict[str, float], f1_scores: dict[str, float], qid_list: list[str] | None = None
) -> dict[str, float]:
    if not qid_list:
        total = len(exact_scores)
        return {
            "exact": 100.0 * sum(exact_scores.values()) / total,
            "f1": 100.0 * sum(f1_scores.values()) / total,
            "total": total,
        }
    total = len(qid_list)
    return {
        "exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
        "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total,
        "total": total,
    }


def merge_eval(main_eval: dict[str, float], new_eval: dict[str, float], prefix: str) -> None:
    for key, value in new_eval.items():
        main_eval[f"{prefix}_{key}"] = value


def find_best_thresh(
    predictions: dict[str, str],
    scores: dict[str, float],
    na_probs: dict[str, float],
    qid_to_has_ans: dict[str, bool],
) -> tuple[float, float]:
    """The score reachable by answering "" above the best na-prob threshold, and that threshold."""
    num_no_ans = sum(1 for qid in qid_to_has_ans if not qid_to_has_ans[qid])
    current_score = num_no_ans
    best_score = current_score
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions[qid] else 0
        current_score += diff
        if current_score > best_score:
            best_score = current_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(
    main_eval: dict[str, float],
    predictions: dict[str, str],
    exact_raw: dict[str, float],
    f1_raw: dict[str, float],
    na_probs: dict[str, float],
    qid_to_has_ans: dict[str, bool],
) -> None:
    best_exact, exact_thresh = find_best_thresh(predictions, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(predictions, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def squad_v2_evaluate(
    dataset: list[dict[str, Any]],
    predictions: dict[str, str],
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """The official script's output dict (same keys, same order) for already-loaded files.

    Every question needs a prediction: the official script crashes (KeyError) without one, so
    this raises a ValueError naming the missing ids instead.
    """
    missing = missing_predictions(dataset, predictions)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} questions have no prediction ({shown}); predict \"\" for no answer")
    with_na_probs = na_probs is not None
    if na_probs is None:
        na_probs = {qid: 0.0 for qid in predictions}
    qid_to_has_ans = make_qid_to_has_ans(dataset)
    has_ans_qids = [qid for qid, has_ans in qid_to_has_ans.items() if has_ans]
    no_ans_qids = [qid for qid, has_ans in qid_to_has_ans.items() if not has_ans]
    exact_raw, f1_raw = get_raw_scores(dataset, predictions)
    exact_thresh = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=has_ans_qids), "HasAns")
    if no_ans_qids:
        merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, qid_list=no_ans_qids), "NoAns")
    if with_na_probs:
        find_all_best_thresh(out_eval, predictions, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    return out_eval


def missing_predictions(dataset: list[dict[str, Any]], predictions: dict[str, str]) -> list[str]:
    return [qa["id"] for qa in iter_questions(dataset) if qa["id"] not in predictions]


def answerable_subset(dataset: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The articles with only their answerable questions (paragraphs and order kept; emptied ones dropped)."""
    subset = []
    for article in dataset:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [qa for qa in paragraph["qas"] if qa["answers"]]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            subset.append({**article, "paragraphs": paragraphs})
    return subset


def answerable_evaluate(dataset: list[dict[str, Any]], predictions: dict[str, str]) -> dict[str, float]:
    """`HasAns_exact`, `HasAns_f1` and `HasAns_total`: the official evaluation on the answerable
    questions alone, so the numbers are the official script's HasAns figures for these predictions.

    Meant for answers always given (no null answer): SQuAD 1.1-style extraction scores, which is
    what a model fine-tuned in CPU-minutes learns, not SQuAD 2.0's `exact` (which also scores
    rejecting the unanswerable questions). Predictions of unanswerable questions are ignored.
    """
    subset = answerable_subset(dataset)
    if not subset:
        raise ValueError("no answerable question to score: HasAns_* needs at least one question with an answer")
    answerable_ids = [qa["id"] for qa in iter_questions(subset)]
    scores = squad_v2_evaluate(subset, {qid: predictions[qid] for qid in answerable_ids if qid in predictions})
    return {name: scores[name] for name in ("HasAns_exact", "HasAns_f1", "HasAns_total")}

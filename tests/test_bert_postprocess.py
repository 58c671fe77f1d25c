"""Post-processing on hand-made logits: spans, n-best, max answer length, the null threshold."""

from __future__ import annotations

import numpy as np
import pytest

from paretune.bert.postprocess import postprocess_qa_predictions, predict_example, span_candidates, windows_per_example

CONTEXT = "Oxygen was isolated by Carl Wilhelm Scheele in 1771."
# Token 0 is CLS, 1-2 question tokens (no offsets), then the context words.
WORDS = ["Oxygen", "was", "isolated", "by", "Carl", "Wilhelm", "Scheele", "in", "1771."]


def _offsets() -> list:
    offsets: list = [None, None, None]
    position = 0
    for word in WORDS:
        start = CONTEXT.index(word, position)
        offsets.append([start, start + len(word)])
        position = start + len(word)
    return offsets + [None]  # trailing SEP


def _logits(start_at: dict[int, float], end_at: dict[int, float], length: int = 13) -> tuple[np.ndarray, np.ndarray]:
    start, end = np.full(length, -10.0), np.full(length, -10.0)
    for index, value in start_at.items():
        start[index] = value
    for index, value in end_at.items():
        end[index] = value
    return start, end


def test_best_span_is_read_from_the_context():
    start, end = _logits({7: 5.0, 0: 1.0}, {9: 5.0, 0: 1.0})
    answer, best_span, null_diff, nbest = predict_example(CONTEXT, [start], [end], [_offsets()])
    assert answer == best_span == "Carl Wilhelm Scheele"
    assert null_diff == pytest.approx(2.0 - 10.0)
    assert nbest[0]["text"] == "Carl Wilhelm Scheele"
    assert sum(item["probability"] for item in nbest) == pytest.approx(1.0)


def test_null_wins_when_its_score_beats_the_best_span_by_more_than_the_threshold():
    start, end = _logits({7: 2.0, 0: 4.0}, {9: 2.0, 0: 4.0})
    answer, best_span, null_diff, _ = predict_example(CONTEXT, [start], [end], [_offsets()])
    assert (answer, null_diff) == ("", pytest.approx(4.0))
    # Answers always given: the best span is kept although the null answer won.
    assert best_span == "Carl Wilhelm Scheele"
    answer, _, _, _ = predict_example(CONTEXT, [start], [end], [_offsets()], null_score_diff_threshold=5.0)
    assert answer == "Carl Wilhelm Scheele"


def test_spans_outside_the_context_reversed_or_too_long_are_not_candidates():
    offsets = _offsets()
    start, end = _logits({1: 9.0, 9: 8.0, 3: 7.0}, {2: 9.0, 4: 8.0, 8: 7.0})
    spans = span_candidates(start, end, offsets, n_best_size=3, max_answer_length=3)
    texts = {CONTEXT[a:b] for (a, b), _, _ in spans}
    # question tokens 1-2 never count; 9->4 and 9->8 are reversed; 3->8 is 6 tokens long.
    assert texts == {"Oxygen was"}
    longer = span_candidates(start, end, offsets, n_best_size=3, max_answer_length=9)
    assert {CONTEXT[a:b] for (a, b), _, _ in longer} == {"Oxygen was", "Oxygen was isolated by Carl Wilhelm"}


def test_null_score_comes_from_the_window_where_it_is_lowest_and_spans_from_all_windows():
    first = _logits({0: 3.0, 4: 1.0}, {0: 3.0, 5: 1.0})
    second = _logits({0: 0.5, 7: 2.0}, {0: 0.5, 9: 2.0})
    answer, _, null_diff, _ = predict_example(
        CONTEXT, [first[0], second[0]], [first[1], second[1]], [_offsets(), _offsets()]
    )
    assert answer == "Carl Wilhelm Scheele"
    assert null_diff == pytest.approx(1.0 - 4.0)


def test_only_null_candidates_yield_the_empty_placeholder():
    start, end = _logits({0: 1.0}, {0: 1.0})
    offsets = [None] * 13
    answer, best_span, _, nbest = predict_example(CONTEXT, [start], [end], [offsets])
    assert answer == ""
    assert nbest[0]["text"] == best_span == "empty"


def test_predictions_for_many_examples_group_windows_by_example_id():
    assert windows_per_example(["a", "b"], ["a", "b", "a"]) == [[0, 2], [1]]
    first = _logits({7: 5.0}, {9: 5.0})
    second = _logits({0: 5.0}, {0: 5.0})
    predictions = postprocess_qa_predictions(
        ["q1", "q2"],
        [CONTEXT, CONTEXT],
        ["q1", "q2"],
        [_offsets(), _offsets()],
        np.stack([first[0], second[0]]),
        np.stack([first[1], second[1]]),
    )
    assert predictions.answers == {"q1": "Carl Wilhelm Scheele", "q2": ""}
    assert predictions.null_score_diffs["q2"] > 0 > predictions.null_score_diffs["q1"]
    # Answers always given: q2's best span although its null answer wins.
    assert predictions.best_spans["q1"] == "Carl Wilhelm Scheele" and predictions.best_spans["q2"] != ""
    with pytest.raises(ValueError, match="windows"):
        postprocess_qa_predictions(["q1"], [CONTEXT], ["q1"], [_offsets()], first[0][None], np.stack([first[1], first[1]]))

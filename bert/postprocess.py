"""From start/end logits over windows to one answer per question.

The rules of transformers' `utils_qa.postprocess_qa_predictions` (SQuAD 2.0 flavour): per
window, the n-best start and end tokens form candidate spans inside the context and no longer
than `max_answer_length`; the null answer scores CLS+CLS in its lowest-scoring window; a
question gets "" when the null score beats the best span by more than
`null_score_diff_threshold`. The best span is kept as well: it is the answer when answers are
always given (the SQuAD 1.1-style `HasAns_*` scores), from the same pass over the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

Offsets = Sequence[Sequence[int] | None]


@dataclass
class Candidate:
    text: str
    start_logit: float
    end_logit: float

    @property
    def score(self) -> float:
        return self.start_logit + self.end_logit


class ExamplePrediction(NamedTuple):
    """One question's answer ("" for no answer), its best non-null span, the null-score
    difference (null score minus the best span's) and the n-best list."""

    answer: str
    best_span: str
    null_score_diff: float
    nbest: list[dict[str, float | str]]


@dataclass
class QAPredictions:
    """Per question id: the answer at the threshold, the best non-null span (the answer when
    answers are always given), the null-score difference (higher: more likely no answer, the
    official script's na-prob input) and the n-best candidates with probabilities."""

    answers: dict[str, str] = field(default_factory=dict)
    best_spans: dict[str, str] = field(default_factory=dict)
    null_score_diffs: dict[str, float] = field(default_factory=dict)
    nbest: dict[str, list[dict[str, float | str]]] = field(default_factory=dict)


def windows_per_example(example_ids: Sequence[str], feature_example_ids: Sequence[str]) -> list[list[int]]:
    """For each example (in order), the indices of its windows."""
    index_of = {example_id: i for i, example_id in enumerate(example_ids)}
    windows: list[list[int]] = [[] for _ in example_ids]
    for feature_index, example_id in enumerate(feature_example_ids):
        windows[index_of[example_id]].append(feature_index)
    return windows


def span_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: Offsets,
    n_best_size: int,
    max_answer_length: int,
) -> list[tuple[tuple[int, int], float, float]]:
    """Valid spans of one window as ((start_char, end_char), start_logit, end_logit)."""
    start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
    end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
    spans = []
    for start_index in start_indexes:
        for end_index in end_indexes:
            if start_index >= len(offsets) or end_index >= len(offsets):
                continue
            if offsets[start_index] is None or offsets[end_index] is None:
                continue
            if len(offsets[start_index]) < 2 or len(offsets[end_index]) < 2:
                continue
            if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                continue
            spans.append(
                (
                    (offsets[start_index][0], offsets[end_index][1]),
                    float(start_logits[start_index]),
                    float(end_logits[end_index]),
                )
            )
    return spans


def softmax_probabilities(scores: Sequence[float]) -> np.ndarray:
    scores_array = np.asarray(scores, dtype=np.float64)
    exp_scores = np.exp(scores_array - np.max(scores_array))
    return exp_scores / exp_scores.sum()


def predict_example(
    context: str,
    window_start_logits: Sequence[np.ndarray],
    window_end_logits: Sequence[np.ndarray],
    window_offsets: Sequence[Offsets],
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
) -> ExamplePrediction:
    """Answer, best span, null score difference and n-best list of one question from its windows' logits."""
    null: Candidate | None = None
    spans: list[tuple[tuple[int, int], float, float]] = []
    for start_logits, end_logits, offsets in zip(window_start_logits, window_end_logits, window_offsets):
        window_null = Candidate("", float(start_logits[0]), float(end_logits[0]))
        if null is None or null.score > window_null.score:
            null = window_null
        spans.extend(span_candidates(start_logits, end_logits, offsets, n_best_size, max_answer_length))
    if null is None:
        raise ValueError("predict_example: a question with no windows; features and examples do not match")
    candidates = [Candidate(context[start:end], start_logit, end_logit) for (start, end), start_logit, end_logit in spans]
    candidates.append(null)
    best = sorted(candidates, key=lambda candidate: candidate.score, reverse=True)[:n_best_size]
    if not any(candidate is null for candidate in best):
        best.append(null)
    if all(candidate.text == "" for candidate in best):
        # Only empty answers: add a placeholder non-null answer, as run_qa does, so one exists.
        best.insert(0, Candidate("empty", 0.0, 0.0))
    probabilities = softmax_probabilities([candidate.score for candidate in best])
    nbest = [
        {
            "text": candidate.text,
            "start_logit": candidate.start_logit,
            "end_logit": candidate.end_logit,
            "probability": float(probability),
        }
        for candidate, probability in zip(best, probabilities)
    ]
    best_non_null = next(candidate for candidate in best if candidate.text != "")
    null_score_diff = null.score - best_non_null.start_logit - best_non_null.end_logit
    answer = "" if null_score_diff > null_score_diff_threshold else best_non_null.text
    return ExamplePrediction(answer, best_non_null.text, float(null_score_diff), nbest)


def postprocess_qa_predictions(
    example_ids: Sequence[str],
    contexts: Sequence[str],
    feature_example_ids: Sequence[str],
    feature_offsets: Sequence[Offsets],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
) -> QAPredictions:
    """Answers for every example from the logits of all windows ([num_windows, seq_len] each)."""
    if len(feature_example_ids) != len(start_logits) or len(start_logits) != len(end_logits):
        raise ValueError(
            f"postprocess: {len(feature_example_ids)} windows but {len(start_logits)} start and "
            f"{len(end_logits)} end logit rows; pass the logits of exactly these features"
        )
    result = QAPredictions()
    windows = windows_per_example(example_ids, feature_example_ids)
    for example_id, context, indices in zip(example_ids, contexts, windows):
        prediction = predict_example(
            context,
            [start_logits[i] for i in indices],
            [end_logits[i] for i in indices],
            [feature_offsets[i] for i in indices],
            n_best_size,
            max_answer_length,
            null_score_diff_threshold,
        )
        result.answers[example_id] = prediction.answer
        result.best_spans[example_id] = prediction.best_span
        result.null_score_diffs[example_id] = prediction.null_score_diff
        result.nbest[example_id] = prediction.nbest
    return result

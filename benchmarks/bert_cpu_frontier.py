"""The case study at CPU scale: is there a student 22% smaller than the 6-layer one within 1 point?

`experiments/bert_squad2_cpu.yaml` on the official SQuAD 2.0 dev set, split by article (25
articles train, 10 evaluate): the MiniLM-L6 teacher fine-tuned once (preprocess flow, every
core), then the tune flow's sweep of at least 24 students (two single-threaded trials at a
time). Printed: the teacher's and the always-no-answer baseline's scores on the eval questions,
the 6-layer full-width reference student, the frontier (exact, num_parameters, f1 beside), and
the smallest frontier student at least 22% smaller than the reference within 1 exact point.

The reference is the teacher's architecture distilled (6 layers, 12 heads) with the sweep's
fixed reference knobs below, run once in this process and cached beside the DuckDB file; a
better full-width 6-layer trial of the sweep replaces it, and the output says which is used.
Run again on the same --db to resume an interrupted sweep.

    python -m benchmarks.bert_cpu_frontier [--db .paretune/bert_cpu_frontier.duckdb] [--budget 24]
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoModelForQuestionAnswering

from bert.data import prepare_squad_data
from bert.distill import run_trial
from bert.metrics import squad_v2_evaluate
from bert.settings import TrialSettings
from bert.squad import dataset_to_squad_json
from bert.training import calibrate_null_threshold, evaluate_model
from flows.bert_demo import frontier_table, wide_console
from flows.local_prefect import prefect_api
from flows.preprocess import PreprocessParameters, preprocess_squad
from flows.tune import ExperimentSource, TuneOptions, tune
from optimizer import ExperimentSpec
from paretune.trial import TrialContext
from storage import DuckDBStorage

SPEC_PATH = Path(__file__).resolve().parents[1] / "experiments" / "bert_squad2_cpu.yaml"
MIN_BUDGET = 24
SMALLER_BY = 0.22
WITHIN_EXACT_POINTS = 1.0
FULL_WIDTH = {"n_layers": 6, "n_heads": 12}
# Mid-range values of the sweep's space (one epoch wants a learning rate well above fine-tuning's).
REFERENCE_ASSIGNMENTS = {
    **FULL_WIDTH, "learning_rate": 3.0e-4, "alpha_ce": 0.5, "temperature": 2, "warm_up_steps": 6,
    "layer_init": "first",
}
SCORE_COLUMNS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact")


def score_line(name: str, metrics: dict[str, float]) -> str:
    return f"{name:<34}" + "  ".join(f"{column} {metrics[column]:6.2f}" for column in SCORE_COLUMNS if column in metrics)


def teacher_and_baseline_scores(settings: TrialSettings, teacher: str) -> tuple[dict, dict]:
    """The teacher on the eval questions (null threshold calibrated on the held-out train
    questions, as the students' is) and the score of answering nothing at all."""
    data = prepare_squad_data(settings)
    gold = dataset_to_squad_json(data.eval_examples)["data"]
    device = torch.device("cpu")
    model = AutoModelForQuestionAnswering.from_pretrained(teacher)
    threshold = settings.null_score_diff_threshold
    if data.calibration_examples is not None:
        threshold = calibrate_null_threshold(
            model, data.calibration_examples, data.calibration_features,
            dataset_to_squad_json(data.calibration_examples)["data"], 64, device, False,
            settings.n_best_size, settings.max_answer_length,
        )
    teacher_metrics = evaluate_model(
        model, data.eval_examples, data.eval_features, gold, 64, device, False,
        settings.n_best_size, settings.max_answer_length, threshold,
    ).metrics
    baseline = squad_v2_evaluate(gold, {question: "" for question in data.eval_examples["id"]})
    return teacher_metrics | {"null_score_diff_threshold": threshold}, baseline


def reference_student(trial_settings: dict, cache_file: Path) -> dict[str, float]:
    """The fixed 6-layer full-width student's metrics, trained once and then read from `cache_file`."""
    settings = {**trial_settings, "torch_threads": torch.get_num_threads()}
    key = hashlib.sha256(json.dumps([trial_settings, REFERENCE_ASSIGNMENTS], sort_keys=True).encode()).hexdigest()
    cached = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    if key not in cached:
        cached[key] = run_trial(REFERENCE_ASSIGNMENTS, TrialContext(settings=settings))
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cached, indent=2))
    return cached[key]


def completed_trials(db_path: str, experiment_id: int) -> list[dict]:
    """Every completed trial: its assignments and metric values."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        rows = storage.query(
            "SELECT o.id, s.assignments, v.metric, v.value FROM observations o "
            "JOIN suggestions s ON s.id = o.suggestion_id JOIN observation_values v ON v.observation_id = o.id "
            "WHERE o.experiment_id = ? AND NOT o.failed",
            [experiment_id],
        )
    trials: dict[int, dict] = {}
    for row in rows:
        trial = trials.setdefault(row["id"], {"assignments": json.loads(row["assignments"]), "metrics": {}})
        trial["metrics"][row["metric"]] = row["value"]
    return list(trials.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bert_cpu_frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=".paretune/bert_cpu_frontier.duckdb", help="DuckDB file of the sweep")
    parser.add_argument("--budget", type=int, default=MIN_BUDGET, help=f"students to tune (default {MIN_BUDGET})")
    parser.add_argument("--seed", type=int, default=0, help="optimizer seed")
    args = parser.parse_args(argv)
    console = wide_console()
    spec = ExperimentSpec.from_file(SPEC_PATH)
    trial_settings = spec.metadata["trial"]
    data_file = Path(trial_settings["train_data"])
    if not data_file.is_file():
        print(f"skipped: SQuAD 2.0 dev set not found at {data_file.resolve()} (run from the repository root, "
              "with the shared data folder beside it)")
        return
    settings = TrialSettings.from_mapping(trial_settings)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)

    with prefect_api():
        prepared = preprocess_squad(PreprocessParameters.from_experiment(SPEC_PATH))
        teacher, baseline = teacher_and_baseline_scores(settings, prepared.teacher)
        console.print(f"{prepared.train_examples} train / {prepared.eval_examples} eval questions, split by article")
        console.print(score_line("teacher (MiniLM-L6, fine-tuned)", teacher)
                      + f"  (null threshold {teacher['null_score_diff_threshold']:.3f})")
        console.print(score_line("always no answer", baseline))
        reference = reference_student(trial_settings, Path(args.db).with_suffix(".reference.json"))
        console.print(score_line("6-layer full-width reference", reference)
                      + f"  num_parameters {reference['num_parameters']:.0f}")
        result = tune(ExperimentSource(spec_path=str(SPEC_PATH)), args.db,
                      TuneOptions(budget=args.budget, parallelism=2, n_workers=2, seed=args.seed))

    console.print(f"sweep: {result.observations} observations ({result.completed} completed, {result.failed} failed)")
    console.print(frontier_table(args.db, result.experiment_id))
    trials = completed_trials(args.db, result.experiment_id)
    full_width = [trial["metrics"] for trial in trials
                  if all(trial["assignments"].get(name) == value for name, value in FULL_WIDTH.items())]
    best_full_width = max(full_width, key=lambda metrics: metrics["exact"], default=None)
    if best_full_width is not None and best_full_width["exact"] > reference["exact"]:
        reference, which = best_full_width, "the best 6-layer full-width trial of the sweep"
    else:
        which = f"the fixed reference student {REFERENCE_ASSIGNMENTS}"
    size_bound = (1 - SMALLER_BY) * reference["num_parameters"]
    exact_bound = reference["exact"] - WITHIN_EXACT_POINTS
    qualifying = sorted(
        (trial["metrics"] for trial in trials
         if trial["metrics"]["num_parameters"] <= size_bound and trial["metrics"]["exact"] >= exact_bound),
        key=lambda metrics: metrics["num_parameters"],
    )
    console.print(f"reference: {which}: exact {reference['exact']:.2f}, num_parameters {reference['num_parameters']:.0f}")
    if qualifying:
        smallest = qualifying[0]
        console.print(
            f"claim holds: a student with {smallest['num_parameters']:.0f} parameters "
            f"({100 * (1 - smallest['num_parameters'] / reference['num_parameters']):.1f}% smaller) scores exact "
            f"{smallest['exact']:.2f} (f1 {smallest['f1']:.2f}) against {reference['exact']:.2f}"
        )
    else:
        console.print(f"claim not met: no completed student has <= {size_bound:.0f} parameters and exact >= {exact_bound:.2f}")


if __name__ == "__main__":
    main()

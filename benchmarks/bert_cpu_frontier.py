"""The case study at CPU scale: how much smaller can a distilled student be, and does the search help?

`experiments/bert_squad2_cpu_early_stopping.yaml` on the official SQuAD 2.0 dev set, split by
article: the MiniLM-L6 teacher fine-tuned once (preprocess flow, every core), then sweeps of
students, two single-threaded trials at a time. The metric is `HasAns_f1`: the official
evaluation of the answerable eval questions with answers always given (SQuAD 1.1-style
extraction), against `num_parameters`; it is not SQuAD 2.0's `exact`, which the CPU teacher
does not learn (see benchmarks/RESULTS.md). Printed:

1. the teacher and the 6-layer full-width reference student (the teacher's shape distilled
   with the fixed knobs below, trained once and cached beside the DuckDB file);
2. the smallest student within 1 HasAns_f1 point of the reference, and its size reduction (the
   case study's "22% smaller");
3. the best student's HasAns_f1 against the reference's at equal or smaller size (the "+3.5%");
4. three arms at the same budget of CPU, each through the tune flow on the same objective,
   settings and two single-threaded Dask workers (`ARMS`): random search (the definition with
   SigOpt's `type: random`: every suggestion a start-up draw, the farthest of 64 uniform draws,
   log-uniform on log parameters, from what was tried), paretune, and paretune with Pareto
   early stopping. Every arm trains and evaluates its students the same way (two epochs, an
   evaluation every third of one: the early-stopping definition's curve), so a student costs
   the same CPU in each; the budget counts a stopped student at the share it trained, so the
   early-stopping arm spends its 16 students' worth on more of them. Per sweep: the
   hypervolume of the students trained to the end (and of those finished before the sweep had
   spent the CPU-hours of its seed's cheapest arm: the arms at equal CPU), what was completed,
   stopped and failed, the students' worth of training and the CPU-hours the trials took.

The sweeps run interleaved (random seed 0, paretune seed 0, early stopping seed 0, random seed
1, ...), so a run cut short still compares the arms; run again on the same --db to resume.

    python -m benchmarks.bert_cpu_frontier [--db .paretune/bert_cpu_frontier.duckdb] [--seeds 2] [--budget 16]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from transformers import AutoModelForQuestionAnswering

from paretune.bert.data import prepare_squad_data
from paretune.bert.distill import run_trial
from paretune.bert.settings import TrialSettings
from paretune.bert.squad import dataset_to_squad_json
from paretune.bert.training import Inference, QuestionSet, calibrate_null_threshold, evaluate_model
from paretune.flows.demo import wide_console
from paretune.flows.demo import frontier_console_table
from paretune.flows.local_prefect import prefect_api
from paretune.flows.preprocess import PreprocessParameters, preprocess_squad
from paretune.flows.tune import ExperimentSource, TuneOptions, finished_tune
from paretune.optimizer import ExperimentSpec
from paretune.optimizer.pareto import hypervolume_2d
from paretune.trial import TrialContext
from paretune.storage import DuckDBStorage, ObservationRecord
from paretune.storage.report import frontier_points as frontier_points_of

SPEC_PATH = Path(__file__).resolve().parents[1] / "experiments" / "bert_squad2_cpu_early_stopping.yaml"
# arm -> (SigOpt's experiment type, whether Pareto early stopping is on)
ARMS = {"random": ("random", False), "paretune": ("offline", False), "paretune_early_stopping": ("offline", True)}
WITHIN_F1_POINTS = 1.0
# Hypervolume box: HasAns_f1 / 100 from 0, num_parameters / the reference's up to this bound.
REFERENCE_SIZE_BOUND = 1.1
# The teacher's shape with mid-range knobs of the sweep's space.
REFERENCE_ASSIGNMENTS = {"n_layers": 6, "n_heads": 12, "learning_rate": 1.0e-4, "alpha_ce": 0.5, "temperature": 2}
SCORE_COLUMNS = ("HasAns_exact", "HasAns_f1", "exact", "f1")
WORKERS = 2


def arm_spec(spec: ExperimentSpec, method: str, seed: int) -> ExperimentSpec:
    """One sweep's definition: `spec` under a name per arm and seed, with the arm's experiment
    type, and `metadata.early_stopping` only where the arm stops trials (the students, their
    checkpoints and so their CPU cost are the same in every arm)."""
    search, stops = ARMS[method]
    metadata = {key: value for key, value in (spec.metadata or {}).items() if stops or key != "early_stopping"}
    if stops and spec.early_stopping is None:
        raise ValueError(f"{method}: the definition {spec.name!r} has no metadata.early_stopping to run it with")
    return spec.model_copy(update={"name": f"{spec.name}-{method}-seed{seed}", "type": search, "metadata": metadata})


def sweep_experiment(db_path: str, spec: ExperimentSpec, method: str, seed: int) -> int:
    """The stored experiment of one sweep (`arm_spec`), created once."""
    arm = arm_spec(spec, method, seed)
    with DuckDBStorage(db_path) as storage:
        for record in storage.list_experiments():
            if record.name == arm.name:
                return record.id
        return storage.create_experiment(arm).id


def score_line(name: str, metrics: dict[str, float]) -> str:
    return f"{name:<34}" + "  ".join(f"{column} {metrics[column]:6.2f}" for column in SCORE_COLUMNS if column in metrics)


def teacher_scores(settings: TrialSettings, teacher: str) -> dict[str, float]:
    """The teacher on the eval questions: HasAns_* with answers always given, and SQuAD 2.0's
    scores with the null threshold calibrated on the held-out train questions, as the students'."""
    data = prepare_squad_data(settings)
    device = torch.device("cpu")
    model = AutoModelForQuestionAnswering.from_pretrained(teacher)
    inference = Inference(64, device, False, settings.n_best_size, settings.max_answer_length)
    threshold = settings.null_score_diff_threshold
    if data.calibration_examples is not None:
        calibration = QuestionSet(data.calibration_examples, data.calibration_features,
                                  dataset_to_squad_json(data.calibration_examples)["data"])
        threshold = calibrate_null_threshold(model, calibration, inference)
    questions = QuestionSet(data.eval_examples, data.eval_features, dataset_to_squad_json(data.eval_examples)["data"])
    evaluation = evaluate_model(model, questions, inference, threshold)
    return {**evaluation.metrics, **evaluation.answerable}


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


# -- what the sweeps found -----------------------------------------------------------------------

def completed(db_path: str, experiment_id: int) -> list[ObservationRecord]:
    """The students trained to the end (a stopped student's values are its last checkpoint's)."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        return [record for record in storage.observations(experiment_id) if not record.failed and not record.stopped]


def completed_within(db_path: str, experiment_id: int, cpu_hours: float) -> list[ObservationRecord]:
    """The students trained to the end before the sweep had spent `cpu_hours`: observations in
    the order they were recorded, each trial's time (stopped and failed ones included) added
    up, so arms that spent different CPU compare at the same spend."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        spent = {row["id"]: row["spent_s"] for row in storage.query(
            "SELECT id, sum(duration_s) OVER (ORDER BY id) AS spent_s FROM observations WHERE experiment_id = ?",
            [experiment_id])}
    return [record for record in completed(db_path, experiment_id) if spent[record.id] <= cpu_hours * 3600 + 1e-6]


@dataclass(frozen=True)
class SweepCost:
    """What one sweep spent: its students by how they ended, the budget they used (students'
    worth of training: a stopped student counts at the share it trained) and the CPU-hours
    its trials took (each on one thread)."""

    completed: int
    stopped: int
    failed: int
    students_worth: float
    cpu_hours: float


def sweep_cost(db_path: str, experiment_id: int) -> SweepCost:
    with DuckDBStorage(db_path, read_only=True) as storage:
        (row,) = storage.query(
            """SELECT count(*) FILTER (WHERE NOT o.failed AND NOT o.stopped) AS completed,
                      count(*) FILTER (WHERE o.stopped) AS stopped, count(*) FILTER (WHERE o.failed) AS failed,
                      coalesce(sum(c.cost), 0) AS students_worth, coalesce(sum(o.duration_s), 0) / 3600 AS cpu_hours
               FROM observations o JOIN observation_costs c ON c.observation_id = o.id
               WHERE o.experiment_id = ?""", [experiment_id])
    return SweepCost(**row)


def hypervolume(observations: list[ObservationRecord], reference_size: float) -> float:
    """Area the students dominate in (HasAns_f1 / 100, num_parameters / the reference's size),
    measured from the corner (0, REFERENCE_SIZE_BOUND): at most REFERENCE_SIZE_BOUND minus the
    smallest student's relative size."""
    if not observations:
        return 0.0
    points = np.array([[-o.values["HasAns_f1"] / 100.0, o.values["num_parameters"] / reference_size] for o in observations])
    return hypervolume_2d(points, np.array([0.0, REFERENCE_SIZE_BOUND]))


def smallest_within(observations: list[ObservationRecord], reference: dict[str, float]) -> ObservationRecord | None:
    """The smallest student whose HasAns_f1 is within WITHIN_F1_POINTS of the reference's."""
    close = [o for o in observations if o.values["HasAns_f1"] >= reference["HasAns_f1"] - WITHIN_F1_POINTS]
    return min(close, key=lambda o: (o.values["num_parameters"], -o.values["HasAns_f1"]), default=None)


def best_at_most(observations: list[ObservationRecord], size: float) -> ObservationRecord | None:
    """The best HasAns_f1 among students no larger than `size`."""
    fitting = [o for o in observations if o.values["num_parameters"] <= size]
    return max(fitting, key=lambda o: (o.values["HasAns_f1"], -o.values["num_parameters"]), default=None)


def shape(observation: ObservationRecord) -> str:
    return f"n_layers {observation.assignments.get('n_layers')}, n_heads {observation.assignments.get('n_heads')}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bert_cpu_frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=".paretune/bert_cpu_frontier.duckdb", help="DuckDB file of the sweeps")
    parser.add_argument("--budget", type=int, help="students per sweep (default: the spec's observation_budget)")
    parser.add_argument("--seeds", type=int, default=2, help="sweeps per arm (seeds 0, 1, ...)")
    parser.add_argument("--methods", default=",".join(ARMS), help=f"comma-separated arms, of {', '.join(ARMS)}")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    if not set(methods) <= set(ARMS):
        parser.error(f"--methods: {', '.join(sorted(set(methods) - set(ARMS)))} unknown; choose from {', '.join(ARMS)}")
    console = wide_console()
    spec = ExperimentSpec.from_file(SPEC_PATH)
    budget = args.budget or spec.observation_budget
    data_file = Path(spec.metadata["trial"]["train_data"])
    if not data_file.is_file():
        print(f"skipped: SQuAD 2.0 dev set not found at {data_file.resolve()} (run from the repository root, "
              "with the shared data folder beside it)")
        return
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    console.print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    with prefect_api():
        sweeps, teacher, reference = run_sweeps(console, args.db, spec, methods, args.seeds, budget)
    console.print(score_line("teacher (MiniLM-L6, fine-tuned)", teacher))
    console.print(score_line("6-layer full-width reference", reference) + f"  num_parameters {reference['num_parameters']:.0f}")
    everything = print_sweeps(console, args.db, sweeps, reference)
    for method in ("paretune", "paretune_early_stopping"):
        if method in methods:
            console.print(f"{method}, seed 0:")
            console.print(frontier_console_table(args.db, sweeps[method, 0]))
    print_findings(console, everything, reference)


def run_sweeps(console: Console, db: str, spec: ExperimentSpec, methods: list[str], seeds: int,
               budget: int) -> tuple[dict[tuple[str, int], int], dict[str, float], dict[str, float]]:
    """Preprocess, the teacher and the reference student, then one tune per (method, seed):
    the experiment id of each sweep, the teacher's scores and the reference's."""
    trial_settings = spec.metadata["trial"]
    started = time.perf_counter()
    prepared = preprocess_squad(PreprocessParameters.from_experiment(SPEC_PATH))
    teacher = teacher_scores(TrialSettings.from_mapping(trial_settings), prepared.teacher)
    reference = reference_student(trial_settings, Path(db).with_suffix(".reference.json"))
    console.print(f"{prepared.train_examples} train / {prepared.eval_examples} eval questions, split by article; "
                  f"teacher and reference ready in {time.perf_counter() - started:.0f} s")
    sweeps: dict[tuple[str, int], int] = {}
    for seed in range(seeds):
        for method in methods:
            experiment_id = sweep_experiment(db, spec, method, seed)
            sweeps[method, seed] = experiment_id
            started = time.perf_counter()
            finished_tune(ExperimentSource(experiment=str(experiment_id)), db,
                          TuneOptions(budget=budget, parallelism=WORKERS, n_workers=WORKERS, seed=seed))
            console.print(f"{method} seed {seed}: {time.perf_counter() - started:.0f} s "
                          f"(load average {os.getloadavg()[0]:.1f})")
    return sweeps, teacher, reference


def print_sweeps(console: Console, db: str, sweeps: dict[tuple[str, int], int],
                 reference: dict[str, float]) -> list[tuple[str, int, Any]]:
    """One table row per sweep and each method's median hypervolume; returns every completed
    student as (method, seed, observation)."""
    everything = []
    console.print("| arm | seed | hypervolume | at the seed's least CPU-hours | completed | stopped | failed "
                  "| students' worth | CPU-hours | frontier points | best HasAns_f1 | smallest within 1 point |")
    console.print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    by_method: dict[str, list[float]] = {}
    costs = {sweep: sweep_cost(db, experiment_id) for sweep, experiment_id in sweeps.items()}
    for (method, seed), experiment_id in sweeps.items():
        observations = completed(db, experiment_id)
        everything += [(method, seed, o) for o in observations]
        volume = hypervolume(observations, reference["num_parameters"])
        by_method.setdefault(method, []).append(volume)
        least = min(cost.cpu_hours for (_, other), cost in costs.items() if other == seed)
        at_least = hypervolume(completed_within(db, experiment_id, least), reference["num_parameters"])
        with DuckDBStorage(db, read_only=True) as storage:
            frontier_points = len(frontier_points_of(storage, experiment_id)[1])
        best = max((o.values["HasAns_f1"] for o in observations), default=float("nan"))
        small = smallest_within(observations, reference)
        cost = costs[method, seed]
        console.print(f"| {method} | {seed} | {volume:.4f} | {at_least:.4f} ({least:.2f} h) | {cost.completed} | "
                      f"{cost.stopped} | {cost.failed} | {cost.students_worth:.2f} | {cost.cpu_hours:.2f} | {frontier_points} | {best:.2f} | "
                      + (f"{small.values['num_parameters']:.0f} ({shape(small)})" if small else "none") + " |")
    for method, volumes in by_method.items():
        console.print(f"{method}: median hypervolume {np.median(volumes):.4f} over {len(volumes)} seed(s): "
                      + ", ".join(f"{volume:.4f}" for volume in volumes))
    return everything


def print_findings(console: Console, everything: list[tuple[str, int, Any]],
                   reference: dict[str, float]) -> None:
    """The smallest student within a point of the reference, and the best at or below its size."""
    students = [o for _, _, o in everything]
    small = smallest_within(students, reference)
    if small is None:
        console.print(f"no student is within {WITHIN_F1_POINTS} HasAns_f1 point of the reference "
                      f"({reference['HasAns_f1']:.2f})")
    else:
        method, seed, _ = next(entry for entry in everything if entry[2] is small)
        console.print(
            f"smallest within {WITHIN_F1_POINTS} point: {small.values['num_parameters']:.0f} parameters "
            f"({100 * (1 - small.values['num_parameters'] / reference['num_parameters']):.1f}% smaller, {shape(small)}, "
            f"{method} seed {seed}), HasAns_f1 {small.values['HasAns_f1']:.2f} against {reference['HasAns_f1']:.2f}"
        )
    best = best_at_most(students, reference["num_parameters"])
    if best is not None:
        gain = best.values["HasAns_f1"] - reference["HasAns_f1"]
        console.print(
            f"best at or below the reference's size: HasAns_f1 {best.values['HasAns_f1']:.2f} ({gain:+.2f} points, "
            f"{100 * gain / reference['HasAns_f1']:+.1f}%) with {best.values['num_parameters']:.0f} parameters "
            f"({shape(best)})"
        )


if __name__ == "__main__":
    main()

"""What answering one checkpoint costs as an experiment's trials grow (early stopping on).

Fills a fresh DuckDB file with N finished trials in SQL (half trained to their ninth checkpoint,
half stopped at the first or third, as Pareto early stopping leaves them), then opens a few new
trials through `TrialSession` and reports their nine checkpoints one by one, timing each answer.
Rungs (checkpoints 1 and 3) compare a trial with every other trial; the other seven read only its
own curve. In the same run, the peer: reading every trial's curve and assignments
(`checkpoint_curves`, `suggestion_assignments`), which every checkpoint paid before only rungs
did, and the rung rule's arithmetic on them (the growth model's fit included).

    python benchmarks/checkpoint_scale.py                  # 10^3 and 10^4 trials
    python benchmarks/checkpoint_scale.py --sizes 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from paretune import stopping
from paretune.lifecycle import TrialSession
from paretune.optimizer import ExperimentSpec
from paretune.storage import DuckDBStorage

MAX_CHECKPOINTS = 9
SPEC = ExperimentSpec.model_validate({
    "name": "checkpoint-scale",
    "parameters": [{"name": "width", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "f1", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
    "observation_budget": 100_000,
    "training_monitor": {"max_checkpoints": MAX_CHECKPOINTS},
    "metadata": {"early_stopping": {"type": "pareto", "reduction_factor": 3, "min_checkpoints": 1}},
})


def seeded(folder: Path, trials: int) -> tuple[Path, int]:
    """A file holding the experiment and `trials` finished trials with their checkpoints, in SQL."""
    db = folder / f"checkpoints-{trials}.duckdb"
    with DuckDBStorage(str(db)) as store:
        experiment_id = store.create_experiment(SPEC).id
    connection = duckdb.connect(str(db))
    connection.execute("SELECT setseed(0.42)")
    connection.execute("INSERT INTO suggestions (experiment_id, assignments, state) "
                       "SELECT ?, json_object('width', random()), 'completed' FROM range(?)", [experiment_id, trials])
    connection.execute("INSERT INTO runs (name, experiment_id, suggestion_id, status) "
                       "SELECT 'trial', experiment_id, id, 'completed' FROM suggestions WHERE experiment_id = ?",
                       [experiment_id])
    # Saturating curves with noise, slower the larger the student; half stopped at rung 1 or 3.
    connection.execute(
        "INSERT INTO checkpoints (run_id, epoch, metric, value) "
        "SELECT r.id, e.epoch, m.metric, CASE m.metric WHEN 'size' THEN 10 + 90 * s.width "
        "  ELSE (20 + 60 * sqrt(s.width)) * (1 - exp(-e.epoch / (1 + 4 * s.width))) + 0.3 * random() END "
        "FROM runs r JOIN (SELECT id, assignments->>'width' AS w FROM suggestions) q ON q.id = r.suggestion_id, "
        "LATERAL (SELECT q.w::DOUBLE AS width) s, range(1, ? + 1) e(epoch), (VALUES ('f1'), ('size')) m(metric) "
        "WHERE r.experiment_id = ? AND e.epoch <= CASE r.id % 4 WHEN 0 THEN 1 WHEN 1 THEN 3 ELSE ? END",
        [MAX_CHECKPOINTS, experiment_id, MAX_CHECKPOINTS])
    connection.close()
    return db, experiment_id


def timed(action) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def measure(db: Path, experiment_id: int, trials: int) -> dict[str, float]:
    """Median seconds of a rung's answer, of another checkpoint's, of the peer's read of every
    curve and of the rung rule's arithmetic."""
    by_kind: dict[str, list[float]] = {"rung": [], "other": []}
    with DuckDBStorage(str(db)) as store:
        session = TrialSession(store, experiment_id)
        for width in (0.2, 0.5, 0.8):
            trial = session.open_at({"width": width}, with_run=True)
            for epoch in range(1, MAX_CHECKPOINTS + 1):
                values = {"f1": (20 + 60 * width ** 0.5) * (1 - 2.718 ** (-epoch / (1 + 4 * width))),
                          "size": 10 + 90 * width}
                seconds = timed(lambda: session.checkpoint(trial, epoch, values))
                by_kind["rung" if stopping.is_rung(SPEC, epoch) else "other"].append(seconds)
            session.complete(trial, values)
        reads = [timed(lambda: (store.checkpoint_curves(experiment_id), store.suggestion_assignments(experiment_id)))
                 for _ in range(3)]
        by_id, assignments = store.checkpoint_curves(experiment_id), store.suggestion_assignments(experiment_id)
        curves = list(by_id.values())
        peers = [stopping.RungEntry(i, curve[0], assignments[i]) for i, curve in by_id.items()]
        trials_so_far = [stopping.TrialCurve(assignments[i], curve) for i, curve in by_id.items()]

        def decide() -> None:
            fixed = stopping.fixed_metrics(SPEC, curves)
            stopping.decide(SPEC, curves[0][:1], peers, 0, fixed, stopping.checkpoint_noise(SPEC, curves),
                            stopping.finished_values(SPEC, curves),
                            stopping.growth_to_end(SPEC, 1, trials_so_far, fixed or set()), peers[0].assignments)
        arithmetic = [timed(decide) for _ in range(3)]
    rung, other = statistics.median(by_kind["rung"]), statistics.median(by_kind["other"])
    rungs = len(stopping.rungs(1, 3, MAX_CHECKPOINTS))
    return {"trials": trials, "rung": rung, "other": other, "read": statistics.median(reads),
            "arithmetic": statistics.median(arithmetic),
            "mean": (rungs * rung + (MAX_CHECKPOINTS - rungs) * other) / MAX_CHECKPOINTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args()
    print("| trials | a rung's answer | another checkpoint's | mean over a trial's 9 "
          "| peer: every curve and assignment read | peer: the rung rule's arithmetic "
          "| every checkpoint as a rung (before) / mean |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for trials in args.sizes:
            row = measure(*seeded(Path(folder), trials), trials)
            cells = [f"{trials:,}", f"{row['rung'] * 1e3:.0f} ms", f"{row['other'] * 1e3:.1f} ms",
                     f"{row['mean'] * 1e3:.0f} ms", f"{row['read'] * 1e3:.0f} ms", f"{row['arithmetic'] * 1e3:.0f} ms",
                     f"{row['rung'] / row['mean']:.1f}x"]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

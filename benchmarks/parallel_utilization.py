"""Worker utilization of the tune flow: does the asynchronous loop keep every Dask worker busy?

    .venv/bin/python -m benchmarks.parallel_utilization [--workers 4 8] [--trials-per-worker 10]

For each worker count N, the tune flow runs N-way parallel on a local cluster of N
single-threaded workers; each trial sleeps a duration drawn uniformly in [0.2, 2) s (seeded by
its suggestion id, independent of the optimizer). Printed per N:

* utilization: busy time (sum of trial durations) / (N x wall time), wall time from the first
  suggestion to the last observation (cluster start-up excluded). Goal: >= 95 % at 8 workers.
* ideal: the same figure for a scheduler with no overhead at all, replaying the run's own
  durations in suggestion order. It is below 100 % because the budget runs out: once the last
  trial has started, workers fall idle one by one while the longest trials finish.
* suggest: seconds `optimizer.suggest` takes per trial, replayed on the run's own history.
* refill: seconds from recording a trial's observation to recording the next suggestion
  (the flow's bookkeeping plus `suggest`).
* dispatch: seconds from recording a suggestion to the flow recording its "started" message
  (the Prefect task run starting in a flow thread, `Client.submit`, Dask scheduling, the
  message's trip back through the queue).
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from paretune.flows.local_prefect import prefect_api
from paretune.flows.tune import ExperimentSource, TuneOptions, tune
from paretune.optimizer import ExperimentSpec, suggest
from paretune.trial import TrialContext
from paretune.storage import DuckDBStorage

MIN_S, MAX_S = 0.2, 2.0


def random_duration_trial(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """Sleep a duration fixed by the suggestion id; report it and a second metric."""
    duration = random.Random(context.suggestion_id).uniform(MIN_S, MAX_S)
    time.sleep(duration)
    return {"loss": float(assignments["x"]) ** 2, "cost": duration}


def spec_for(workers: int, trials: int) -> dict[str, Any]:
    return {
        "name": f"utilization-{workers}-workers",
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": -1.0, "max": 1.0}},
                       {"name": "y", "type": "double", "bounds": {"min": -1.0, "max": 1.0}}],
        "metrics": [{"name": "loss", "objective": "minimize", "strategy": "optimize"},
                    {"name": "cost", "objective": "minimize", "strategy": "optimize"}],
        "observation_budget": trials,
        "parallel_bandwidth": workers,
        "metadata": {"objective": f"{__name__}:random_duration_trial"},
    }


def zero_overhead_utilization(workers: int, durations: list[float]) -> float:
    """Utilization if each trial started on the first free worker the instant it freed."""
    free_at = [0.0] * workers
    for duration in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration)
    return sum(durations) / (workers * max(free_at))


def measure(workers: int, trials: int, db_path: str) -> dict[str, float]:
    spec_dict = spec_for(workers, trials)
    with DuckDBStorage(db_path) as storage:
        experiment_id = storage.create_experiment(ExperimentSpec.model_validate(spec_dict)).id
    tune(ExperimentSource(experiment=str(experiment_id)), db_path,
         TuneOptions(parallelism=workers, n_workers=workers, report=False, seed=0))
    with DuckDBStorage(db_path, read_only=True) as storage:
        suggestions = storage.list_suggestions(experiment_id)
        observations = storage.observations(experiment_id)
        history = storage.history(experiment_id)
        spec = storage.get_experiment(experiment_id).spec
    created = {s.id: s.created_at for s in suggestions}
    wall = (max(o.created_at for o in observations) - min(created.values())).total_seconds()
    busy = sum(o.duration_s or 0.0 for o in observations)
    ends = sorted(o.created_at for o in observations)
    starts = sorted(created.values())[workers:]
    refill = [(start - end).total_seconds() for end, start in zip(ends, starts)]
    dispatch = [(s.started_at - s.created_at).total_seconds() for s in suggestions if s.started_at]
    suggest_s = []
    for k in range(len(history)):
        began = time.perf_counter()
        suggest(spec, history[:k], [], n=1, seed=k)
        suggest_s.append(time.perf_counter() - began)
    return {
        "workers": workers, "trials": len(observations), "wall_s": wall, "busy_s": busy,
        "utilization": busy / (workers * wall),
        "ideal": zero_overhead_utilization(workers, [o.duration_s or 0.0 for o in
                                                     sorted(observations, key=lambda o: o.suggestion_id)]),
        "suggest_s": statistics.mean(suggest_s), "refill_s": statistics.mean(refill),
        "dispatch_s": statistics.mean(dispatch),
    }


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parallel_utilization",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--trials-per-worker", type=int, default=10)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder, prefect_api(home=Path(folder) / "prefect"):
        for workers in args.workers:
            results.append(measure(workers, workers * args.trials_per_worker, str(Path(folder) / f"{workers}.duckdb")))
    print(f"{'workers':>7} {'trials':>6} {'wall s':>7} {'utilization':>11} {'ideal':>6} {'suggest s':>9} "
          f"{'refill s':>8} {'dispatch s':>10}")
    for r in results:
        print(f"{r['workers']:>7} {r['trials']:>6} {r['wall_s']:>7.1f} {r['utilization']:>10.1%} {r['ideal']:>6.1%} "
              f"{r['suggest_s']:>9.4f} {r['refill_s']:>8.4f} {r['dispatch_s']:>10.4f}")
    return results


if __name__ == "__main__":
    main()

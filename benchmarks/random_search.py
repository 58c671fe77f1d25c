"""Random search as a peer of paretune's tuning flow, on any experiment and its objective.

Every suggestion is drawn uniformly at random from the spec's space (log-uniform where it says
`transformation: log`; what Optuna's RandomSampler draws), recorded up front in the same store,
and run once through the spec's own `metadata.objective` with its `metadata.trial` settings on a
local Dask cluster, `workers` single-threaded trials at a time, as the tuning flow runs them.
A trial's `TrialFailure` becomes a failed observation with its reason. Used by
benchmarks/bert_cpu_frontier.py to compare hypervolumes at the same budget.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, LocalCluster, as_completed

from optimizer import ExperimentSpec
from paretune.failures import TrialFailure
from paretune.trial import TrialContext
from storage import DuckDBStorage

WORKERS = 2


def sweep_experiment(db_path: str, spec: ExperimentSpec, method: str, seed: int) -> int:
    """The stored experiment of one sweep (the spec under a name per method and seed), created once."""
    name = f"{spec.name}-{method}-seed{seed}"
    with DuckDBStorage(db_path) as storage:
        for record in storage.list_experiments():
            if record.name == name:
                return record.id
        return storage.create_experiment(spec.model_copy(update={"name": name})).id


def random_assignments(spec: ExperimentSpec, rng: np.random.Generator) -> dict[str, Any]:
    """One point drawn uniformly from the spec's space: log-uniform for `transformation: log`,
    every integer and category equally likely (what Optuna's RandomSampler draws)."""
    assignments: dict[str, Any] = {}
    for parameter in spec.parameters:
        if parameter.type == "categorical":
            values = list(parameter.categorical_values)
            assignments[parameter.name] = values[int(rng.integers(len(values)))]
        elif parameter.type == "int":
            assignments[parameter.name] = int(rng.integers(int(parameter.bounds.min), int(parameter.bounds.max) + 1))
        elif parameter.is_log:
            low, high = math.log(parameter.bounds.min), math.log(parameter.bounds.max)
            assignments[parameter.name] = float(math.exp(rng.uniform(low, high)))
        else:
            assignments[parameter.name] = float(rng.uniform(parameter.bounds.min, parameter.bounds.max))
    return assignments


@dataclass
class Outcome:
    values: dict[str, float] | None
    failure: str | None
    seconds: float


def run_objective(objective: str, assignments: dict[str, Any], settings: dict[str, Any]) -> Outcome:
    """One trial on a worker: the spec's objective, a TrialFailure becoming a failed outcome."""
    module, _, function = objective.partition(":")
    started = time.perf_counter()
    try:
        values = getattr(importlib.import_module(module), function)(assignments, TrialContext(settings=settings))
    except TrialFailure as failure:
        return Outcome(None, str(failure), time.perf_counter() - started)
    return Outcome({name: float(value) for name, value in values.items()}, None, time.perf_counter() - started)


def random_search(db_path: str, experiment_id: int, budget: int, seed: int, workers: int = WORKERS) -> None:
    """The peer: `budget` uniformly random suggestions, recorded up front, each run once through the
    spec's objective on a local Dask cluster `workers` at a time, recorded as it ends. A rerun
    runs only the suggestions still open."""
    with DuckDBStorage(db_path) as storage:
        spec = storage.get_experiment(experiment_id).spec
        if not storage.list_suggestions(experiment_id):
            rng = np.random.default_rng(seed)
            storage.create_suggestions(experiment_id, [random_assignments(spec, rng) for _ in range(budget)])
        todo = storage.list_suggestions(experiment_id, state="open")
        if not todo:
            return
        settings = dict((spec.metadata or {}).get("trial") or {})
        metric_names = {metric.name for metric in spec.metrics}
        optimized = [metric.name for metric in spec.optimized_metrics]
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            futures = {
                client.submit(run_objective, spec.metadata["objective"], suggestion.assignments, settings, pure=False):
                    suggestion.id
                for suggestion in todo
            }
            for future in as_completed(futures):
                outcome: Outcome = future.result()
                values = None if outcome.values is None else {k: v for k, v in outcome.values.items() if k in metric_names}
                storage.record_observation(futures[future], values=values, failed=values is None,
                                           reason=outcome.failure, duration_s=outcome.seconds)
                result = outcome.failure or ", ".join(f"{name} {values[name]:g}" for name in optimized)
                print(f"random seed {seed}, suggestion {futures[future]}: {result} ({outcome.seconds:.0f} s)", flush=True)

"""How fast the `pareto_frontier` view answers on large experiments.

Fills a fresh DuckDB file with N random observations of a two-metric experiment (a threshold,
a constraint, 5% failures) and times the view against two peers on the same data, in the
same run: the frontier computed in Python with numpy after fetching the values (what a user
without the view would write), and a naive O(n^2) self-join (only at small N: it is the
shape the view's sort-and-scan avoids).

    python benchmarks/storage_frontier.py            # 10^5 and 10^6
    python benchmarks/storage_frontier.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from paretune.optimizer import ExperimentSpec
from paretune.storage import DuckDBStorage

SPEC = ExperimentSpec.model_validate({
    "name": "frontier-benchmark",
    "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [
        {"name": "exact", "objective": "maximize", "threshold": 0.2},
        {"name": "size", "objective": "minimize"},
        {"name": "latency", "objective": "minimize", "strategy": "constraint", "threshold": 0.9},
    ],
})

NAIVE_SQL = """
SELECT a.observation_id FROM feasible_scores a
WHERE a.experiment_id = ? AND NOT EXISTS (
    SELECT 1 FROM feasible_scores b
    WHERE b.experiment_id = a.experiment_id AND b.value_1 >= a.value_1 AND b.value_2 <= a.value_2
      AND (b.value_1 > a.value_1 OR b.value_2 < a.value_2))
"""


def fill(store: DuckDBStorage, n: int, seed: int) -> int:
    """Bulk-load n observations in SQL (Python loops would dominate the benchmark's own time)."""
    experiment_id = store.create_experiment(SPEC).id
    store.query("SELECT setseed(?)", [seed / 1000])
    store.query(
        "INSERT INTO suggestions (id, experiment_id, assignments, state) "
        "SELECT i, ?, json_object('x', random()), CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'completed' END "
        "FROM range(1, ? + 1) t(i)", [experiment_id, n])
    store.query(
        "INSERT INTO observations (id, experiment_id, suggestion_id, failed, failure_reason) "
        "SELECT i, ?, i, i % 20 = 0, CASE WHEN i % 20 = 0 THEN 'out_of_memory' END FROM range(1, ? + 1) t(i)",
        [experiment_id, n])
    # A correlated trade-off: accuracy grows with size, plus noise; latency follows size.
    store.query(
        "INSERT INTO observation_values (observation_id, metric, value) "
        "SELECT i, m.metric, CASE m.metric WHEN 'exact' THEN least(1, sqrt(s) + 0.1 * random()) "
        "  WHEN 'size' THEN s ELSE s + 0.2 * random() END "
        "FROM (SELECT i, random() AS s FROM range(1, ? + 1) t(i) WHERE i % 20 <> 0) "
        "CROSS JOIN (VALUES ('exact'), ('size'), ('latency')) m(metric)", [n])
    return experiment_id


def time_it(action, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def numpy_frontier(store: DuckDBStorage, experiment_id: int) -> int:
    rows = store._connection.execute(
        "SELECT o.id, max(v.value) FILTER (v.metric = 'exact'), max(v.value) FILTER (v.metric = 'size'), "
        "max(v.value) FILTER (v.metric = 'latency') FROM observations o JOIN observation_values v "
        "ON v.observation_id = o.id WHERE o.experiment_id = ? AND NOT o.failed GROUP BY o.id",
        [experiment_id]).fetchnumpy()
    columns = list(rows.values())
    exact, size, latency = columns[1], columns[2], columns[3]
    keep = (exact >= 0.2) & (latency <= 0.9)
    exact, size = exact[keep], -size[keep]
    order = np.lexsort((-size, -exact))
    best_above = np.maximum.accumulate(np.concatenate([[-np.inf], size[order][:-1]]))
    return int(np.count_nonzero(size[order] > best_above))


def view_frontier(store: DuckDBStorage, experiment_id: int) -> list[dict]:
    return store.query("SELECT * FROM pareto_frontier WHERE experiment_id = ?", [experiment_id])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--naive-size", type=int, default=5_000, help="N for the O(n^2) peer (0 to skip)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"{'observations':>12} {'view ms':>9} {'numpy ms':>9} {'view/numpy':>10} {'frontier':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            with DuckDBStorage(Path(folder) / f"frontier-{n}.duckdb") as store:
                experiment_id = fill(store, n, seed=n % 997)
                view_s, rows = time_it(lambda: view_frontier(store, experiment_id), args.repeats)
                numpy_s, count = time_it(lambda: numpy_frontier(store, experiment_id), args.repeats)
                # Ties of (exact, size) are vanishingly rare with random doubles: counts agree.
                assert len(rows) == count, (len(rows), count)
                print(f"{n:>12,} {view_s * 1e3:>9.1f} {numpy_s * 1e3:>9.1f} {view_s / numpy_s:>10.2f} {len(rows):>8}")
        if args.naive_size:
            with DuckDBStorage(Path(folder) / "naive.duckdb") as store:
                experiment_id = fill(store, args.naive_size, seed=1)
                view_s, rows = time_it(lambda: view_frontier(store, experiment_id), args.repeats)
                naive_s, naive = time_it(lambda: store.query(NAIVE_SQL, [experiment_id]), 1)
                assert len(naive) == len(rows)
                print(f"\nO(n^2) self-join peer at {args.naive_size:,} observations: {naive_s * 1e3:.1f} ms, "
                      f"view {view_s * 1e3:.1f} ms (naive/view = {naive_s / view_s:.1f}x)")


if __name__ == "__main__":
    main()

"""How fast the dashboard answers for an experiment of 10^3 and 10^5 observations.

Seeds a fresh DuckDB file per size in SQL (4 parameters, two optimized metrics with a
threshold, a constraint, 5% failures), starts `paretune dashboard` on it as a user does, and
times, median of `--repeats`:

- `page`: the experiment page's HTML (what the browser asks for first);
- `data`: `/api/experiments/{id}`, the report model as JSON, cold (a new observation since the
  last request; what a refresh costs while a sweep runs) and cached (a reload);
- `version`: the poll an open page makes every few seconds;
- `importance`: parameter importance, cold (random forests on <= 1000 observations) and cached;
- `browser`: headless Chromium from navigation until every chart is drawn (one run);
- `sql`, the peer: the plain SQL a user would write for the same data (observations joined with
  their assignments and values, fetched into Python), through the same read-only store.

The ratios against `sql` are what to compare across machines; the goal is `data` cold under
1 s at 10^5 observations.

    python benchmarks/dashboard.py                 # 10^3 and 10^5
    python benchmarks/dashboard.py --sizes 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from paretune.optimizer import ExperimentSpec
from paretune.storage import DuckDBStorage

ROOT = Path(__file__).resolve().parents[1]
SPEC = ExperimentSpec.model_validate({
    "name": "dashboard-benchmark",
    "parameters": [
        {"name": "width", "type": "double", "bounds": {"min": 16, "max": 1024}, "transformation": "log"},
        {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "learning_rate", "type": "double", "bounds": {"min": 1e-5, "max": 1e-1}, "transformation": "log"},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd", "lamb"]},
    ],
    "metrics": [
        {"name": "accuracy", "objective": "maximize", "threshold": 0.3},
        {"name": "size", "objective": "minimize"},
        {"name": "latency", "objective": "minimize", "strategy": "constraint", "threshold": 0.9},
    ],
    "observation_budget": 100_000,
})
PEER_SQL = (
    "SELECT o.id, o.failed, o.failure_reason, s.assignments, v.metric, v.value FROM observations o "
    "JOIN suggestions s ON s.id = o.suggestion_id LEFT JOIN observation_values v ON v.observation_id = o.id "
    "WHERE o.experiment_id = ? ORDER BY o.id"
)


def seed(path: Path, n: int) -> int:
    """n observations in three INSERT ... SELECT statements (a Python loop would take minutes)."""
    with DuckDBStorage(path) as store:
        experiment_id = store.create_experiment(SPEC).id
        store.query("SELECT setseed(0.42)")
        store.query(
            "INSERT INTO suggestions (experiment_id, assignments, state) "
            "SELECT ?, json_object('width', 16 * pow(64, random()), 'depth', 1 + (i % 8), "
            "  'learning_rate', pow(10, -5 + 4 * random()), 'optimizer', ['adamw', 'sgd', 'lamb'][1 + i % 3]), "
            "  CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'completed' END "
            "FROM range(1, ? + 1) t(i)", [experiment_id, n])
        store.query(
            "INSERT INTO observations (experiment_id, suggestion_id, failed, failure_reason, duration_s) "
            "SELECT experiment_id, id, state = 'failed', "
            "  CASE WHEN state = 'failed' THEN 'out_of_memory: CUDA out of memory' END, 10 * random() "
            "FROM suggestions WHERE experiment_id = ? ORDER BY id", [experiment_id])
        # A correlated trade-off: accuracy grows with size, plus noise; latency follows size.
        store.query(
            "INSERT INTO observation_values (observation_id, metric, value) "
            "SELECT i, m.metric, CASE m.metric WHEN 'accuracy' THEN least(1, sqrt(s) + 0.1 * random()) "
            "  WHEN 'size' THEN 1e6 * s ELSE s + 0.2 * random() END "
            "FROM (SELECT id AS i, random() AS s FROM observations WHERE experiment_id = ? AND NOT failed) "
            "CROSS JOIN (VALUES ('accuracy'), ('size'), ('latency')) m(metric)", [experiment_id])
    return experiment_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def get(url: str) -> bytes:
    response = httpx.get(url, timeout=120)
    response.raise_for_status()
    return response.content


def touch(path: Path, experiment_id: int) -> None:
    """One more failed observation: the report's version changes, so the next request is cold."""
    with DuckDBStorage(path) as store:
        (suggestion,) = store.create_suggestions(experiment_id, [{"width": 32.0, "depth": 2, "learning_rate": 1e-3,
                                                                 "optimizer": "sgd"}])
        store.record_observation(suggestion.id, failed=True, reason="timeout")


def browser_load(url: str) -> float | None:
    """Seconds from navigation until the page has drawn its data and the importance chart."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function("() => document.body.dataset.version !== undefined", timeout=300_000)
        page.wait_for_selector("#importance .main-svg", timeout=300_000)
        elapsed = time.perf_counter() - start
        browser.close()
    return elapsed


def measure(n: int, repeats: int, folder: Path) -> dict[str, float | None]:
    path = folder / f"dashboard-{n}.duckdb"
    start = time.perf_counter()
    experiment_id = seed(path, n)
    seeded_s = time.perf_counter() - start
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "paretune.cli", "--db", str(path), "dashboard", "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(base + "/api/experiments", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        api = f"{base}/api/experiments/{experiment_id}"

        def cold(url: str) -> float:
            def one() -> float:
                touch(path, experiment_id)
                begin = time.perf_counter()
                get(url)
                return time.perf_counter() - begin
            return statistics.median(one() for _ in range(repeats))

        def peer() -> None:
            with DuckDBStorage(path, read_only=True) as store:
                store.query(PEER_SQL, [experiment_id])

        results: dict[str, float | None] = {
            "sql": timed(peer, repeats),
            "page": timed(lambda: get(f"{base}/experiments/{experiment_id}"), repeats),
            "data_cold": cold(api),
            "data_cached": timed(lambda: get(api), repeats),
            "version": timed(lambda: get(api + "/version"), repeats),
            "importance_cold": cold(api + "/importance"),
            "importance_cached": timed(lambda: get(api + "/importance"), repeats),
            "browser": browser_load(f"{base}/experiments/{experiment_id}"),
            "json_mb": len(get(api)) / 1e6,
            "seed_s": seeded_s,
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    header = ("observations", "sql (peer)", "page", "data cold", "data cached", "version", "importance cold",
              "importance cached", "browser", "JSON")
    print("| " + " | ".join(header) + " |")
    print("|" + "---:|" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            r = measure(n, args.repeats, Path(folder))
            peer = r["sql"] or 1e-9

            def cell(key: str) -> str:
                value = r[key]
                return "n/a" if value is None else f"{value * 1000:.0f} ms ({value / peer:.1f}x)"

            print(f"| {n:,} | {r['sql'] * 1000:.0f} ms | {cell('page')} | {cell('data_cold')} | {cell('data_cached')} | "
                  f"{cell('version')} | {cell('importance_cold')} | {cell('importance_cached')} | {cell('browser')} | "
                  f"{r['json_mb']:.1f} MB |", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

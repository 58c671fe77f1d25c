"""The team server under load, beside the in-process Python API measured in the same run.

1. Concurrency: N clients (threads, each its own HTTP session), each running suggest -> observe
   for a fixed time against a real `paretune serve` subprocess; the peer is N threads of the
   in-process Python API (`paretune.open_experiment(...).suggest()` / `.observe()`) on a file of
   their own. Reported: observations/s, p50/p99 of one suggest+observe, and the audit: every
   acknowledged observation (noted by the client, in a side file) stored exactly once, nothing
   stored that was not acknowledged, no 5xx.
2. Long histories: one suggestion through the API with 10^4 and 10^5 observations already
   stored (the first one, which loads the history, and the next ones, which read it from
   memory), beside the Python API's suggestion on the same file and the optimizer alone on the
   same history; and what the server adds without the optimizer: a suggestion at chosen
   assignments (the same path, no search) and an observation.

    python benchmarks/server_load.py                                   # 1, 8, 32 clients; 10^4, ~10^5
    python benchmarks/server_load.py --clients 1 8 --seconds 10 --histories 10000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import duckdb
import requests

import paretune
from paretune import optimizer
from paretune.storage import DuckDBStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_fixtures import Server, make_token  # noqa: E402  (the tests' real server subprocess)

DEFINITION = {
    "name": "load",
    "parameters": [{"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}} for i in range(3)]
    + [{"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}}],
    "metrics": [{"name": "accuracy", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
    "observation_budget": 100_000,  # the most a definition may ask for
}


def metrics_of(assignments: dict[str, Any]) -> dict[str, float]:
    size = assignments["x0"] + assignments["depth"] / 8
    return {"accuracy": size - (assignments["x1"] - 0.5) ** 2 - assignments["x2"] / 10, "size": size}


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# -- 1. concurrency --------------------------------------------------------------------------------
def drive(clients: int, seconds: float, turn: Callable[[int], Any]) -> tuple[list[float], list[Any]]:
    """Run `turn(client)` in `clients` threads until time is up; latencies and what each returned."""
    latencies: list[float] = []
    results: list[Any] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(client: int) -> None:
        while time.monotonic() < deadline:
            began = time.perf_counter()
            result = turn(client)
            with lock:
                latencies.append(time.perf_counter() - began)
                results.append(result)
            if result is None:
                return

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, results


def server_run(folder: Path, clients: int, seconds: float) -> dict[str, Any]:
    db = folder / f"server-{clients}.duckdb"
    token = make_token(db)
    server = Server(db, folder / f"server-{clients}.log").start()
    sessions = [requests.Session() for _ in range(clients)]
    for session in sessions:
        session.auth = (token, "")
    server_errors: list[int] = []
    observe_s: list[float] = []  # the observation call alone: what the server adds without the optimizer
    side_file = folder / f"acknowledged-{clients}.jsonl"

    def turn(client: int) -> Any:
        session = sessions[client]
        suggestion = session.post(f"{base}/suggestions", timeout=300)
        if suggestion.status_code != 200:
            server_errors.append(suggestion.status_code)
            return None
        body = suggestion.json()
        values = [{"name": k, "value": v} for k, v in metrics_of(body["assignments"]).items()]
        began = time.perf_counter()
        observed = session.post(f"{base}/observations", json={"suggestion": body["id"], "values": values}, timeout=300)
        observe_s.append(time.perf_counter() - began)
        if observed.status_code != 200:
            server_errors.append(observed.status_code)
            return None
        with side_file.open("a") as side:
            side.write(json.dumps({"suggestion": body["id"], "observation": observed.json()["id"]}) + "\n")
        return body["id"]

    try:
        created = sessions[0].post(f"{server.url}/v1/experiments", json=DEFINITION, timeout=60)
        base = f"{server.url}/v1/experiments/{created.json()['id']}"
        began = time.perf_counter()
        latencies, _ = drive(clients, seconds, turn)
        elapsed = time.perf_counter() - began
    finally:
        server.stop()
    acknowledged = [json.loads(line) for line in side_file.read_text().splitlines()]
    with DuckDBStorage(db, read_only=True) as storage:
        stored = storage.query("SELECT suggestion_id, count(*) AS n FROM observations GROUP BY suggestion_id")
    stored_ids = {str(row["suggestion_id"]) for row in stored}
    acked_ids = {a["suggestion"] for a in acknowledged}
    return {"observations": len(acknowledged), "per_s": len(acknowledged) / elapsed,
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "observe_p50": percentile(observe_s, 0.5), "lost": len(acked_ids - stored_ids), "duplicated": sum(row["n"] - 1 for row in stored),
            "unacknowledged_stored": len(stored_ids - acked_ids), "5xx": sum(code >= 500 for code in server_errors),
            "4xx": sum(400 <= code < 500 for code in server_errors)}


def python_api_run(folder: Path, clients: int, seconds: float) -> dict[str, Any]:
    db = folder / f"python-{clients}.duckdb"
    experiment_id = paretune.create_experiment(DEFINITION, db=str(db)).id
    experiments = [paretune.open_experiment(experiment_id, db=str(db)) for _ in range(clients)]

    def turn(client: int) -> Any:
        experiment = experiments[client]
        suggestion = experiment.suggest()
        return experiment.observe(suggestion, values=metrics_of(suggestion.assignments)).id

    began = time.perf_counter()
    latencies, results = drive(clients, seconds, turn)
    elapsed = time.perf_counter() - began
    return {"observations": len(results), "per_s": len(results) / elapsed, "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99)}


# -- 2. long histories --------------------------------------------------------------------------------
def seeded(folder: Path, observations: int) -> tuple[Path, int]:
    """A file holding the experiment and `observations` observations, written in SQL."""
    db = folder / f"history-{observations}.duckdb"
    experiment_id = paretune.create_experiment(DEFINITION, db=str(db)).id
    connection = duckdb.connect(str(db))
    connection.execute("SELECT setseed(0.42)")
    connection.execute(
        "INSERT INTO suggestions (experiment_id, assignments, state) SELECT ?, json_object('x0', random(), "
        "'x1', random(), 'x2', random(), 'depth', 1 + (i % 8)), 'completed' FROM range(?) t(i)",
        [experiment_id, observations])
    connection.execute("INSERT INTO observations (experiment_id, suggestion_id) SELECT experiment_id, id "
                       "FROM suggestions WHERE experiment_id = ?", [experiment_id])
    connection.execute(
        "INSERT INTO observation_values (observation_id, metric, value) "
        "SELECT o.id, m.metric, CASE m.metric WHEN 'size' THEN s.a.x0::DOUBLE + s.a.depth::DOUBLE / 8 "
        "ELSE s.a.x0::DOUBLE + s.a.depth::DOUBLE / 8 - (s.a.x1::DOUBLE - 0.5) ^ 2 END "
        "FROM observations o JOIN (SELECT id, assignments::JSON AS a FROM suggestions) s ON s.id = o.suggestion_id, "
        "(VALUES ('accuracy'), ('size')) m(metric)")
    connection.close()
    return db, experiment_id


def history_run(folder: Path, observations: int, repeats: int) -> dict[str, Any]:
    db, experiment_id = seeded(folder, observations)
    with DuckDBStorage(db) as storage:
        history = storage.history(experiment_id)
    spec = optimizer.ExperimentSpec.model_validate(DEFINITION)
    optimizer_s: list[float] = []

    def optimizer_alone(seed: int) -> None:
        """The search on the same history, in this process: interleaved with the API's, so both see the same load."""
        began = time.perf_counter()
        optimizer.propose(spec, history, [], n=1, seed=seed)
        optimizer_s.append(time.perf_counter() - began)

    python_s = []
    for _ in range(max(1, repeats // 2)):
        experiment = paretune.open_experiment(experiment_id, db=str(db))
        began = time.perf_counter()
        (suggestion,) = experiment.suggest_batch(1)
        python_s.append(time.perf_counter() - began)
        experiment.observe(suggestion, values=metrics_of(suggestion.assignments))
    token = make_token(db)
    server = Server(db, folder / f"history-{observations}.log").start()
    session = requests.Session()
    session.auth = (token, "")
    base = f"{server.url}/v1/experiments/{experiment_id}"
    api_s, own_s, observe_s = [], [], []

    def timed(samples: list[float], path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        began = time.perf_counter()
        answer = session.post(f"{base}/{path}", json=body, timeout=900)
        samples.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text
        return answer.json()

    try:
        for turn in range(repeats + 1):
            # the server's own part: a suggestion at chosen assignments runs the same path but no search
            chosen = timed(own_s, "suggestions", {"assignments": {"x0": 0.5, "x1": 0.5, "x2": turn / 10, "depth": 2}})
            searched = timed(api_s, "suggestions")
            optimizer_alone(turn)
            for body in (chosen, searched):
                values = [{"name": k, "value": v} for k, v in metrics_of(body["assignments"]).items()]
                timed(observe_s, "observations", {"suggestion": body["id"], "values": values})
    finally:
        server.stop()
    return {"observations": observations, "api_first": api_s[0], "api_warm": statistics.median(api_s[1:]),
            "python_api": statistics.median(python_s), "optimizer": statistics.median(optimizer_s[1:]),
            "server_own": statistics.median(own_s[1:]), "observe": statistics.median(observe_s[2:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--histories", type=int, nargs="*", default=[10_000, 99_900])  # the budget caps at 10^5
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        if args.clients:
            print("| clients | server obs/s | server p50 | server p99 | observe call p50 | Python API obs/s | Python API p50 | "
                  "Python API p99 | lost | duplicated | stored unacknowledged | 5xx | 4xx |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for clients in args.clients:
            served, peer = server_run(folder, clients, args.seconds), python_api_run(folder, clients, args.seconds)
            print(f"| {clients} | {served['per_s']:.1f} ({served['per_s'] / peer['per_s']:.2f}x) | "
                  f"{served['p50'] * 1000:.0f} ms | {served['p99'] * 1000:.0f} ms | "
                  f"{served['observe_p50'] * 1000:.0f} ms | {peer['per_s']:.1f} | "
                  f"{peer['p50'] * 1000:.0f} ms | {peer['p99'] * 1000:.0f} ms | {served['lost']} | "
                  f"{served['duplicated']} | {served['unacknowledged_stored']} | {served['5xx']} | {served['4xx']} |",
                  flush=True)
        if args.histories:
            print("\n| observations | API, first (loads the history) | API, next | Python API | optimizer alone | "
                  "API at chosen assignments (no search) | observe call |")
            print("|---:|---:|---:|---:|---:|---:|---:|")
        for observations in args.histories:
            row = history_run(folder, observations, args.repeats)
            print(f"| {observations:,} | {row['api_first'] * 1000:.0f} ms | {row['api_warm'] * 1000:.0f} ms | "
                  f"{row['python_api'] * 1000:.0f} ms ({row['python_api'] / row['api_warm']:.1f}x the API) | "
                  f"{row['optimizer'] * 1000:.0f} ms | {row['server_own'] * 1000:.0f} ms | "
                  f"{row['observe'] * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()

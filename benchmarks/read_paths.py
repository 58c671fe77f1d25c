"""How can people read a DuckDB file while a sweep writes it? The options, measured side by side.

    .venv/bin/python -m benchmarks.read_paths [--observations 1000 100000] [--seconds 10]

DuckDB lets one process hold a file; while it does, every other process is refused. For a store
of `--observations` observations, a writer process commits one small trial close after another
for `--seconds` while a reader process queries the frontier, under each design:

* `held`: the writer keeps the file open (paretune before this design): readers are refused.
* `retry`: the writer holds the file per commit only; readers open the file itself read-only,
  retrying while it is held. Readers and writers now contend for one lock.
* `copy` (paretune's): the writer holds the file per commit and publishes a copy of the
  checkpointed file by rename; readers open the copy, which no writer ever locks.
* `copy-db`: as `copy`, but publishing through DuckDB's `COPY FROM DATABASE`.

Printed per design: writes per second (against `held`, the fastest a writer can go), reads per
second, reads refused, and the reads' median and worst latency.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from paretune.optimizer import ExperimentSpec
from paretune.storage import DuckDBStorage

SPEC = ExperimentSpec.model_validate({
    "name": "read-paths", "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "a"}, {"name": "b", "objective": "minimize"}], "observation_budget": 100_000,
})
DESIGNS = ("held", "retry", "copy", "copy-db")


def seed(path: Path, observations: int) -> None:
    with DuckDBStorage(path) as store:
        experiment_id = store.create_experiment(SPEC).id
    connection = duckdb.connect(str(path))
    connection.execute("INSERT INTO suggestions (experiment_id, assignments, state) SELECT 1, "
                       "'{\"x\": ' || (i / $n)::VARCHAR || '}', 'completed' FROM range($n) t(i)", {"n": observations})
    connection.execute("INSERT INTO observations (experiment_id, suggestion_id) SELECT 1, id FROM suggestions")
    connection.execute("INSERT INTO observation_values (observation_id, metric, value) "
                       "SELECT id, 'a', random() FROM observations UNION ALL SELECT id, 'b', random() FROM observations")
    connection.close()
    assert experiment_id == 1


def one_write(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("BEGIN")
    (suggestion,) = connection.execute("INSERT INTO suggestions (experiment_id, assignments, state) "
                                       "VALUES (1, '{\"x\": 0.5}', 'completed') RETURNING id").fetchone()
    (observation,) = connection.execute("INSERT INTO observations (experiment_id, suggestion_id) VALUES (1, ?) "
                                        "RETURNING id", [suggestion]).fetchone()
    connection.execute("INSERT INTO observation_values (observation_id, metric, value) VALUES (?, 'a', 0.5), (?, 'b', 0.5)",
                       [observation, observation])
    connection.execute("COMMIT")


def writer(design: str, path: str, seconds: float, counter: multiprocessing.Value) -> None:
    deadline = time.monotonic() + seconds
    if design == "held":
        connection = duckdb.connect(path)
        while time.monotonic() < deadline:
            one_write(connection)
            counter.value += 1
        connection.close()
        return
    host = duckdb.connect(":memory:")
    while time.monotonic() < deadline:
        while True:
            try:
                host.execute(f"ATTACH '{path}' AS db")
                break
            except duckdb.IOException:
                time.sleep(0.001)  # a reader holds the file (retry)
        host.execute("USE db")
        one_write(host)
        host.execute("USE memory")
        host.execute("DETACH db")
        if design == "copy":
            shutil.copyfile(path, path + ".tmp")
            os.replace(path + ".tmp", path + ".read")
        elif design == "copy-db":
            host.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
            host.execute(f"ATTACH '{path}.tmp' AS dst")
            host.execute("COPY FROM DATABASE src TO dst")
            host.execute("DETACH src")
            host.execute("DETACH dst")
            os.replace(path + ".tmp", path + ".read")
        counter.value += 1


def reader(design: str, path: str, seconds: float, results: multiprocessing.Queue) -> None:
    target = path if design in ("held", "retry") else path + ".read"
    latencies, refused = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.perf_counter()
        while True:
            try:
                connection = duckdb.connect(target, read_only=True)
                connection.execute("SELECT count(*) FROM pareto_frontier").fetchall()
                connection.close()
                break
            except duckdb.Error:
                if design == "held":
                    refused += 1
                    break
                time.sleep(0.001)
        latencies.append(time.perf_counter() - began)
        time.sleep(0.01)
    results.put((latencies, refused))


def measure(design: str, folder: Path, observations: int, seconds: float) -> dict[str, float]:
    path = folder / f"{design}.duckdb"
    seed(path, observations)
    shutil.copyfile(path, str(path) + ".read")
    counter = multiprocessing.Value("i", 0)
    results: multiprocessing.Queue = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=writer, args=(design, str(path), seconds, counter)),
                 multiprocessing.Process(target=reader, args=(design, str(path), seconds, results))]
    for process in processes:
        process.start()
    latencies, refused = results.get(timeout=seconds + 600)
    for process in processes:
        process.join()
    return {"writes_s": counter.value / seconds, "reads_s": len(latencies) / seconds, "refused": refused,
            "read_median_ms": statistics.median(latencies) * 1000, "read_max_ms": max(latencies) * 1000,
            "size_mb": path.stat().st_size / 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.read_paths", description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    for observations in args.observations:
        with tempfile.TemporaryDirectory() as name:
            rows = {design: measure(design, Path(name), observations, args.seconds) for design in DESIGNS}
        print(f"\n{observations} observations ({rows['copy']['size_mb']:.1f} MB file), {args.seconds:g} s each")
        print(f"{'design':<8} {'writes/s':>9} {'vs held':>8} {'reads/s':>8} {'refused':>8} {'read median ms':>15} "
              f"{'read max ms':>12}")
        for design, row in rows.items():
            print(f"{design:<8} {row['writes_s']:>9.1f} {row['writes_s'] / rows['held']['writes_s']:>8.3f} "
                  f"{row['reads_s']:>8.1f} {row['refused']:>8} {row['read_median_ms']:>15.1f} {row['read_max_ms']:>12.1f}")


if __name__ == "__main__":
    main()

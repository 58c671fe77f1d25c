"""A sweep people watch: what readers cost the loop, how fast readers are, how fast a cancel lands.

    .venv/bin/python -m benchmarks.live_sweep [--workers 4] [--trials 48] [--repeats 2] [--poll-s 1] [--cancels 3]

Three figures, each against a peer measured in the same run:

* loop cost per trial, alone and with readers: the tune flow runs `--trials` trials of a fixed
  0.5 s on `--workers` local workers; the cost is the worker time each trial leaves idle,
  (workers x wall - busy) / trials, wall from the first suggestion to the last observation.
  "with readers" runs the same sweep while another process polls every `--poll-s` seconds (a
  dashboard refreshing every 3 s polls less): `paretune list` (the CLI's own code), a
  `DuckDBStorage(read_only=True)` progress read and a raw `duckdb` query of `<db>.read`. Alone and
  with readers alternate, `--repeats` times each; the reader's own CPU time is printed, since on
  a machine with fewer cores than processes any reader slows the sweep by the CPU it takes.
  Goal: readers add under 5 %.
* reader latency: median and 99th percentile of those polls, each of the three kinds timed.
  Goal: p99 under 1 s.
* cancel to Cancelled: a sweep of 30 s trials runs as `python -m paretune.flows.tune`; its flow run is set
  Cancelling through the API; the time until the API shows Cancelled, `--cancels` times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

from paretune.flows.local_prefect import prefect_api
from paretune.flows.tune import ExperimentSource, TuneOptions, tune
from paretune.optimizer import ExperimentSpec
from paretune.trial import TrialContext
from paretune.storage import DuckDBStorage

ROOT = Path(__file__).resolve().parents[1]
TRIAL_S = 0.5

READER = textwrap.dedent("""
    import contextlib, io, json, sys, time
    import duckdb
    from paretune.cli import main
    from paretune.storage import DuckDBStorage

    db, stop, out, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    samples = {"cli list": [], "read-only store": [], "raw duckdb": []}
    import os
    while not os.path.exists(stop):
        time.sleep(pause)
        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["list", "--db", db]) == 0
        samples["cli list"].append(time.perf_counter() - began)
        began = time.perf_counter()
        with DuckDBStorage(db, read_only=True) as store:
            store.progress(1)
        samples["read-only store"].append(time.perf_counter() - began)
        began = time.perf_counter()
        connection = duckdb.connect(db + ".read", read_only=True)
        connection.execute("SELECT count(*) FROM pareto_frontier").fetchall()
        connection.close()
        samples["raw duckdb"].append(time.perf_counter() - began)
    samples["cpu_s"] = [time.process_time()]
    json.dump(samples, open(out, "w"))
""")


def fixed_trial(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    time.sleep(float(context.settings.get("sleep_s", TRIAL_S)))
    return {"loss": float(assignments["x"]) ** 2, "cost": abs(float(assignments["y"]))}


def spec(name: str, trials: int, workers: int, sleep_s: float) -> dict[str, Any]:
    return {
        "name": name,
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": -1.0, "max": 1.0}},
                       {"name": "y", "type": "double", "bounds": {"min": -1.0, "max": 1.0}}],
        "metrics": [{"name": "loss", "objective": "minimize"}, {"name": "cost", "objective": "minimize"}],
        "observation_budget": trials, "parallel_bandwidth": workers,
        "metadata": {"objective": "benchmarks.live_sweep:fixed_trial", "trial": {"sleep_s": sleep_s}},
    }


def loop_cost(folder: Path, name: str, trials: int, workers: int, poll_s: float | None
              ) -> tuple[float, dict[str, list[float]]]:
    """Idle worker seconds per trial for one sweep; polled every `poll_s` s (None: no reader),
    the reader's timings too."""
    db = folder / f"{name}.duckdb"
    with DuckDBStorage(db) as store:  # the file exists before the readers start
        experiment_id = store.create_experiment(ExperimentSpec.model_validate(spec(name, trials, workers, TRIAL_S))).id
    stop, out = folder / f"{name}.stop", folder / f"{name}.polls.json"
    reader = None
    if poll_s is not None:
        reader = subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop), str(out), str(poll_s)], cwd=ROOT,
                                  env=os.environ | {"PYTHONPATH": str(ROOT)})
    try:
        tune(ExperimentSource(experiment=str(experiment_id)), str(db),
             TuneOptions(parallelism=workers, n_workers=workers, report=False, seed=0))
    finally:
        stop.touch()
        if reader is not None:
            reader.wait(timeout=120)
    with DuckDBStorage(db, read_only=True) as store:
        suggestions = store.list_suggestions(experiment_id)
        observations = store.observations(experiment_id)
    wall = (max(o.created_at for o in observations) - min(s.created_at for s in suggestions)).total_seconds()
    busy = sum(o.duration_s or 0.0 for o in observations)
    return (workers * wall - busy) / len(observations), json.loads(out.read_text()) if reader else {}


def cancel_to_cancelled(folder: Path, api_url: str, index: int) -> float:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    path = folder / f"cancel-{index}.yaml"
    path.write_text(yaml.safe_dump(spec(f"cancel-{index}", 8, 2, 30.0)))
    log = folder / f"cancel-{index}.log"
    with open(log, "wb") as output:
        flow = subprocess.Popen([sys.executable, "-m", "paretune.flows.tune", str(path), "--db", str(folder / "cancel.duckdb"),
                                 "--no-report"], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                env=os.environ | {"PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 300
    while _running_trials(folder / "cancel.duckdb", index) < 2:  # both workers busy: a cancel has work to stop
        if time.monotonic() > deadline or flow.poll() is not None:
            raise RuntimeError(f"the sweep did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    flow_run_id = next(line.rsplit("flow-run/", 1)[1].split()[0] for line in log.read_text().splitlines()
                       if "flow-run/" in line)
    with get_client(sync_client=True) as client:
        asked = time.monotonic()
        client.set_flow_run_state(flow_run_id, State(type=StateType.CANCELLING))
        while not client.read_flow_run(flow_run_id).state.is_cancelled():
            time.sleep(0.05)
        took = time.monotonic() - asked
    flow.wait(timeout=120)
    return took


def _running_trials(db: Path, index: int) -> int:
    if not db.exists():
        return 0
    with DuckDBStorage(db, read_only=True) as store:
        named = [e for e in store.list_experiments() if e.name == f"cancel-{index}"]
        return 0 if not named else sum(1 for s in store.list_suggestions(named[0].id, state="open") if s.started_at is not None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--poll-s", type=float, default=1.0, help="pause between one reader's polls (default 1)")
    parser.add_argument("--cancels", type=int, default=3)
    args = parser.parse_args(argv)
    alone: list[float] = []
    watched: list[float] = []
    polls: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as name, prefect_api(home=Path(name) / "prefect") as api_url:
        folder = Path(name)
        for repeat in range(args.repeats):
            alone.append(loop_cost(folder, f"alone-{repeat}", args.trials, args.workers, None)[0])
            cost, samples = loop_cost(folder, f"watched-{repeat}", args.trials, args.workers, args.poll_s)
            watched.append(cost)
            for kind, times in samples.items():
                polls.setdefault(kind, []).extend(times)
        cancels = [cancel_to_cancelled(folder, api_url, i) for i in range(args.cancels)]
    reader_cpu = sum(polls.pop("cpu_s", []))
    figures = {"alone_s": statistics.median(alone), "with_readers_s": statistics.median(watched),
               "cancel_s": cancels, "polls": {k: len(v) for k, v in polls.items()}}
    print(f"loop cost per trial ({args.workers} workers, {args.trials} trials of {TRIAL_S} s, median of "
          f"{args.repeats}): alone {figures['alone_s'] * 1000:.0f} ms, with a reader polling every {args.poll_s:g} s "
          f"{figures['with_readers_s'] * 1000:.0f} ms: ratio {figures['with_readers_s'] / figures['alone_s']:.3f} "
          f"(goal < 1.05); the reader used {reader_cpu:.1f} CPU-s; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'reader':<16} {'polls':>6} {'median ms':>10} {'p99 ms':>8}")
    for kind, times in polls.items():
        print(f"{kind:<16} {len(times):>6} {statistics.median(times) * 1000:>10.1f} {percentile(times, 0.99) * 1000:>8.1f}")
    print("cancel -> Cancelled: " + ", ".join(f"{c:.2f} s" for c in cancels)
          + f" (median {statistics.median(cancels):.2f} s; goal 5 s)")
    return figures


if __name__ == "__main__":
    main()

"""Reading and writing one DuckDB file while sweeps run: readers, two sweeps, a shared experiment,
and a Dask cluster started from the command line, as on many machines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paretune.storage import DuckDBStorage
from sweeps import ROOT, SideLog, flow_env, start_flow, wait_for, write_spec

pytestmark = pytest.mark.slow

READER = textwrap.dedent("""
    import contextlib, io, json, sys, time
    import duckdb
    import paretune
    from paretune.cli import main

    db, polls, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seen = []
    for poll in range(polls):
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            code = main(["list", "--db", db])
        listed = int(text.getvalue().split()[-4].split("/")[0]) if code == 0 and "/" in text.getvalue() else None
        raw = duckdb.connect(db + ".read", read_only=True)
        counted = raw.execute("SELECT count(*) FROM observations").fetchone()[0]
        frontier = raw.execute("SELECT count(*) FROM pareto_frontier").fetchone()[0]
        raw.close()
        via_api = paretune.connect(db).execute("SELECT count(*) FROM observations").fetchone()[0]
        seen.append({"code": code, "listed": listed, "sql": counted, "api": via_api, "frontier": frontier,
                     "at": time.monotonic()})
        time.sleep(0.05)
    json.dump(seen, open(out, "w"))
""")


def test_readers_poll_while_a_four_worker_sweep_writes(prefect_api, tmp_path):
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "watched", budget=40, bandwidth=4, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(0.3, 1.2))
    db = tmp_path / "watched.duckdb"
    flow = start_flow(spec, "--db", str(db), "--no-report", env=flow_env(prefect_api), log=tmp_path / "flow.log")
    wait_for(lambda: Path(f"{db}.read").exists() and SideLog.read(side).starts, 180, "the sweep to start")
    polls = tmp_path / "polls.json"
    reader = subprocess.run([sys.executable, "-c", READER, str(db), "100", str(polls)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert reader.returncode == 0, reader.stderr[-3000:]
    still_running_at_last_poll = flow.poll() is None
    assert flow.wait(timeout=300) == 0, (tmp_path / "flow.log").read_text()[-3000:]

    seen = json.loads(polls.read_text())
    counts = [poll["sql"] for poll in seen]
    print(f"\nreaders: {len(seen)} polls (CLI list, raw duckdb on {db.name}.read, paretune.connect), "
          f"observations seen from {counts[0]} to {counts[-1]}")
    assert len(seen) == 100 and all(poll["code"] == 0 for poll in seen)
    assert counts == sorted(counts) and [p["listed"] for p in seen] == sorted(p["listed"] for p in seen)
    assert all(poll["api"] >= poll["sql"] for poll in seen)  # opened later, never older
    assert counts[0] < 40 and (counts[-1] > counts[0] or not still_running_at_last_poll)
    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        assert store.progress(experiment.id).observations == 40
        assert len(store.list_suggestions(experiment.id)) == 40


def test_two_experiments_sweep_side_by_side_and_one_experiment_takes_one_sweep(prefect_api, tmp_path):
    db = tmp_path / "shared.duckdb"
    specs = [write_spec(tmp_path, name, budget=10, bandwidth=1, objective="tests.objectives:sleep_for",
                        duration=(0.5, 1.0)) for name in ("left", "right")]
    env = flow_env(prefect_api)
    flows = [start_flow(spec, "--db", str(db), "--no-report", "--workers", "1", env=env,
                        log=tmp_path / f"flow-{i}.log") for i, spec in enumerate(specs)]
    wait_for(lambda: sum((tmp_path / f"flow-{i}.log").read_text().count("trial ") for i in range(2)) >= 2, 240,
             "both sweeps to run trials")
    second = start_flow(specs[0], "--db", str(db), "--no-report", "--workers", "1", env=env,
                        log=tmp_path / "second.log")
    assert second.wait(timeout=120) == 1
    refusal = (tmp_path / "second.log").read_text()
    assert "is being tuned by another run" in refusal and f'"pid": {flows[0].pid}' in refusal
    for i, flow in enumerate(flows):
        assert flow.wait(timeout=300) == 0, (tmp_path / f"flow-{i}.log").read_text()[-3000:]
    with DuckDBStorage(db, read_only=True) as store:
        experiments = store.list_experiments()
        assert sorted(e.name for e in experiments) == ["left", "right"]
        for experiment in experiments:
            assert store.progress(experiment.id).observations == 10
            assert {s.state for s in store.list_suggestions(experiment.id)} == {"completed"}


def test_a_cluster_started_from_the_command_line_gains_and_loses_workers(prefect_api, tmp_path):
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "cluster", budget=14, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(1.5, 2.5))
    db = tmp_path / "cluster.duckdb"
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]  # `dask scheduler`, `dask worker`, as an operator types them
    scheduler = subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                                 "--no-nanny", "--host", "127.0.0.1", "--dashboard-address", ":0"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    processes = [scheduler]
    try:
        wait_for(scheduler_file.exists, 60, "the scheduler file")
        address = json.loads(scheduler_file.read_text())["address"]
        first = worker()
        processes.append(first)
        flow = start_flow(spec, "--db", str(db), "--no-report", "--address", address, env=flow_env(prefect_api),
                          log=tmp_path / "flow.log")
        processes.append(flow)
        wait_for(lambda: SideLog.read(side).starts, 180, "a trial on the first worker")
        joined = worker()  # a machine joins mid-sweep
        processes.append(joined)
        wait_for(lambda: joined.pid in {pid for pids in SideLog.read(side).starts.values() for pid in pids}, 120,
                 "a trial on the worker that joined")
        wait_for(lambda: joined.pid in SideLog.read(side).running().values(), 60, "the new worker mid-trial")
        victim = next(s for s, pid in SideLog.read(side).running().items() if pid == joined.pid)
        os.kill(joined.pid, signal.SIGKILL)  # ... and leaves mid-trial
        assert flow.wait(timeout=300) == 0, (tmp_path / "flow.log").read_text()[-3000:]
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.kill()
                process.wait()

    ran = SideLog.read(side)
    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        observations = {o.suggestion_id: o for o in store.observations(experiment.id)}
    assert len(observations) == 14
    assert observations[victim].failed and observations[victim].failure_reason.startswith("worker_lost")
    assert [o.suggestion_id for o in observations.values() if o.failed] == [victim]
    assert ran.starts[victim] == [joined.pid]  # not run again elsewhere (the scheduler would have tried)
    assert ran.started_more_than_once() == []

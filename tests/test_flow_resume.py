"""Resume: a tune flow killed with SIGKILL mid-experiment, run again, ends with the full budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paretune.flows.tune import ExperimentSource, TuneOptions, tune
from paretune.storage import DuckDBStorage
from sweeps import SideLog, write_spec

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run_until_observed(command: list[str], env: dict[str, str], observed: int, side_log: Path,
                       timeout_s: float = 180) -> list[str]:
    """Start the flow; once `observed` trial lines were printed and the side log shows a trial
    running, SIGKILL it (so the kill always lands mid-trial); return the trial lines printed."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    finished: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        for line in process.stdout:
            if line.startswith("trial ") and " -> " in line:
                finished.append(line)
            if len(finished) >= observed or time.monotonic() > deadline:
                break
        while not SideLog.read(side_log).running() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert len(finished) >= observed, "the flow printed too few trial lines before the deadline"
    return finished


def test_a_killed_flow_resumes_without_losing_or_repeating_observations(prefect_api, dask_cluster, tmp_path):
    side_log = tmp_path / "trials.log"
    spec = write_spec(tmp_path, "resumable", budget=10, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side_log)}, duration=(0.5, 1.0))
    db = str(tmp_path / "resume.duckdb")
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "paretune.flows.tune", spec, "--db", db, "--address", dask_cluster.scheduler_address,
               "--no-report"]
    printed = run_until_observed(command, env, observed=4, side_log=side_log)

    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        before = {o.suggestion_id: o for o in store.observations(experiment.id)}
        open_at_kill = {s.id for s in store.list_suggestions(experiment.id, state="open")}
    assert len(before) >= len(printed)
    assert open_at_kill, "the kill should have caught trials in flight"

    result = tune(ExperimentSource(spec_path=spec), db,
                  TuneOptions(dask_address=dask_cluster.scheduler_address, report=False))

    assert result.experiment_id == experiment.id
    assert result.observations == 10 and result.expired_on_start == len(open_at_kill)
    with DuckDBStorage(db, read_only=True) as store:
        after = {o.suggestion_id: o for o in store.observations(experiment.id)}
        observations = store.observations(experiment.id)
        suggestions = {s.id: s for s in store.list_suggestions(experiment.id)}
        runs = {run.suggestion_id: run for run in store.list_runs(experiment.id)}
    assert len(observations) == 10 and len(after) == 10
    for suggestion_id, observation in before.items():
        assert after[suggestion_id] == observation
    assert {suggestions[i].state for i in open_at_kill} == {"expired"}
    assert not open_at_kill & after.keys()
    assert {s.state for i, s in suggestions.items() if i not in open_at_kill} == {"completed"}
    assert all(runs[i].status == "failed" and "expired" in runs[i].failure_reason for i in open_at_kill)

"""Faults caused for real, counted through a side channel (the objective's own log file):
a SIGKILLed flow, killed workers, a cancel from Prefect, Ctrl-C, the local Prefect server.

Each sweep runs `python -m paretune.flows.tune` in its own process with its own local Dask cluster,
against the session's Prefect server unless the test is about the local one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from paretune.storage import DuckDBStorage
from sweeps import SideLog, descendants, flow_env, start_flow, still_alive, wait_for, write_spec

pytestmark = pytest.mark.slow


def stored(db: Path) -> dict:
    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        return {
            "experiment": experiment,
            "observations": store.observations(experiment.id),
            "suggestions": store.list_suggestions(experiment.id),
            "runs": store.list_runs(experiment.id),
            "progress": store.progress(experiment.id),
        }


def test_sigkill_at_twenty_random_moments_loses_and_repeats_nothing(prefect_api, tmp_path):
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "killed", budget=60, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(1.0, 2.0))
    db = tmp_path / "killed.duckdb"
    env = flow_env(prefect_api)
    rng = random.Random(20)
    orphans: list[psutil.Process] = []
    for kill in range(20):
        started_before = sum(len(pids) for pids in SideLog.read(side).starts.values())
        flow = start_flow(spec, "--db", str(db), "--no-report", env=env, log=tmp_path / "flow.log")
        if kill % 4 == 0:  # while it starts: imports, Prefect, the Dask cluster
            time.sleep(rng.uniform(0.5, 4.0))
        else:  # mid-sweep: trials running, finishing, being recorded
            wait_for(lambda: sum(len(p) for p in SideLog.read(side).starts.values()) > started_before, 180,
                     "this run's first trial")
            time.sleep(rng.uniform(0.0, 2.5))
        children = descendants(flow.pid)
        flow.send_signal(signal.SIGKILL)
        flow.wait()
        orphans += still_alive(children, within_s=10)
    finished = start_flow(spec, "--db", str(db), "--no-report", env=env, log=tmp_path / "flow.log")
    assert finished.wait(timeout=300) == 0, (tmp_path / "flow.log").read_text()[-3000:]

    ran, state = SideLog.read(side), stored(db)
    observed = {o.suggestion_id: o for o in state["observations"]}
    print(f"\nkill loop: 20 SIGKILLs, {len(state['suggestions'])} suggestions, {len(observed)} observations, "
          f"{sum(1 for s in state['suggestions'] if s.state == 'expired')} expired, "
          f"{len(ran.started_more_than_once())} trials run twice, {len(orphans)} orphaned processes")
    assert orphans == []
    assert any(s.state == "expired" for s in state["suggestions"]), "no kill caught a trial in flight"
    assert ran.started_more_than_once() == []
    assert state["progress"].observations == 60 and len(observed) == 60
    assert len({tuple(sorted(s.assignments.items())) for s in state["suggestions"]}) == len(state["suggestions"])
    assert sorted(observed) == sorted(s.id for s in state["suggestions"] if s.state == "completed")
    # nothing committed is lost: a completed run always has its observation, and its trial ran once
    for run in state["runs"]:
        assert (run.status == "completed") == (run.suggestion_id in observed and not observed[run.suggestion_id].failed)
    for suggestion in state["suggestions"]:
        assert (suggestion.id in observed) == (suggestion.state in ("completed", "failed"))
        assert suggestion.state in ("completed", "expired")
    for suggestion_id in observed:
        assert len(ran.starts[suggestion_id]) == 1 and ran.ends[suggestion_id] == 1


def test_killed_workers_lose_only_the_trial_they_ran_and_nothing_runs_twice(prefect_api, tmp_path):
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "workers", budget=26, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(1.0, 2.0))
    db = tmp_path / "workers.duckdb"
    flow = start_flow(spec, "--db", str(db), "--no-report", env=flow_env(prefect_api), log=tmp_path / "flow.log")
    rng = random.Random(10)
    killed: dict[int, int] = {}  # pid -> suggestion it was running when killed
    try:
        while len(killed) < 10:
            time.sleep(rng.uniform(0.5, 2.5))
            running = {s: pid for s, pid in SideLog.read(side).running().items() if pid not in killed}
            assert flow.poll() is None, "the sweep ended before ten workers were killed"
            if running:
                suggestion, pid = rng.choice(sorted(running.items()))
                os.kill(pid, signal.SIGKILL)
                killed[pid] = suggestion
        assert flow.wait(timeout=300) == 0, (tmp_path / "flow.log").read_text()[-3000:]
    finally:
        if flow.poll() is None:
            flow.kill()

    ran, state = SideLog.read(side), stored(db)
    lost = {o.suggestion_id for o in state["observations"] if o.failed and o.failure_reason.startswith("worker_lost")}
    killed_mid_trial = {s for pid, s in killed.items() if ran.starts.get(s) == [pid] and not ran.ends[s]}
    on_killed_workers = {s for s, pids in ran.starts.items() if pids[-1] in killed}
    print(f"\nworker kills: {len(killed)} workers killed, {len(lost)} trials lost, "
          f"{len(ran.started_more_than_once())} trials run twice, "
          f"{sum(1 for o in state['observations'] if not o.failed)} completed once")
    assert ran.started_more_than_once() == []
    assert killed_mid_trial <= lost <= on_killed_workers
    assert state["progress"].observations == 26
    for observation in state["observations"]:
        if not observation.failed:
            assert ran.ends[observation.suggestion_id] == 1
    runs = {run.suggestion_id: run for run in state["runs"]}
    assert all(runs[s].status == "failed" and "worker_lost" in runs[s].failure_reason for s in lost)


def test_a_timeout_restarts_its_worker_and_touches_no_finished_trial(prefect_api, tmp_path):
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "timeouts", budget=10, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(0.5, 12.0))
    db = tmp_path / "timeouts.duckdb"
    flow = start_flow(spec, "--db", str(db), "--no-report", "--timeout", "4", "--seed", "3", env=flow_env(prefect_api),
                      log=tmp_path / "flow.log")
    assert flow.wait(timeout=600) == 0, (tmp_path / "flow.log").read_text()[-3000:]
    ran, state = SideLog.read(side), stored(db)
    timed_out = {o.suggestion_id for o in state["observations"] if o.failed}
    print(f"\ntimeouts: {len(timed_out)} trials timed out (their workers restarted), "
          f"{len(ran.started_more_than_once())} trials run twice")
    assert timed_out, "no trial ran past the timeout"
    reasons = [o.failure_reason for o in state["observations"] if o.failed]
    assert all(reason == "timeout: no result after 4 s" for reason in reasons), reasons
    assert ran.started_more_than_once() == []
    for observation in state["observations"]:
        assert len(ran.starts[observation.suggestion_id]) == 1
        if not observation.failed:
            assert ran.ends[observation.suggestion_id] == 1 and observation.values["loss"] < 4.5


def test_a_cancelled_sweep_stops_within_seconds_never_reruns_and_resumes(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "cancelled", budget=8, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(4.0, 6.0))
    db = tmp_path / "cancelled.duckdb"
    log = tmp_path / "flow.log"
    flow = start_flow(spec, "--db", str(db), "--no-report", env=flow_env(prefect_api), log=log)
    wait_for(lambda: len(SideLog.read(side).running()) == 2, 120, "two trials running")
    flow_run_id = next(line.rsplit("flow-run/", 1)[1].split()[0] for line in log.read_text().splitlines()
                       if "flow-run/" in line)
    with get_client(sync_client=True) as client:
        asked = time.monotonic()
        client.set_flow_run_state(flow_run_id, State(type=StateType.CANCELLING))
        wait_for(lambda: client.read_flow_run(flow_run_id).state.is_cancelled(), 30, "the Cancelled state")
        to_cancelled = time.monotonic() - asked
    assert flow.wait(timeout=30) == 130
    ran_at_cancel = SideLog.read(side)
    time.sleep(3)  # long enough for Dask to have run them again, had anything been left to do so
    after = SideLog.read(side)
    state = stored(db)
    print(f"\ncancel: Cancelling -> Cancelled in {to_cancelled:.2f} s")
    assert to_cancelled < 5
    assert after.starts == ran_at_cancel.starts and after.ends == ran_at_cancel.ends
    assert {s.state for s in state["suggestions"]} == {"cancelled"} and state["progress"].observations == 0
    assert {r.status for r in state["runs"]} == {"cancelled"}

    resumed = start_flow(spec, "--db", str(db), "--no-report", env=flow_env(prefect_api), log=log)
    assert resumed.wait(timeout=300) == 0
    state = stored(db)
    assert state["progress"].observations == 8 and state["experiment"].state == "completed"
    assert SideLog.read(side).started_more_than_once() == []


def test_ctrl_c_in_a_terminal_cancels_the_sweep(tmp_path):
    """A terminal's Ctrl-C signals the whole process group: the flow, its local Dask workers and
    the local Prefect server it started."""
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "interrupted", budget=6, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(4.0, 6.0))
    db = tmp_path / "interrupted.duckdb"
    env = flow_env(None, PREFECT_HOME=str(tmp_path / "prefect"))
    flow = start_flow(spec, "--db", str(db), "--no-report", env=env, log=tmp_path / "flow.log", own_group=True)
    wait_for(lambda: len(SideLog.read(side).running()) == 2, 300, "two trials running")
    os.killpg(flow.pid, signal.SIGINT)
    assert flow.wait(timeout=60) == 130, (tmp_path / "flow.log").read_text()[-3000:]
    assert "Finished in state Cancelled" in (tmp_path / "flow.log").read_text()
    assert "sweep stopped: interrupted (Ctrl-C); 2 trial(s) cancelled" in (tmp_path / "flow.log").read_text()
    assert "run again to resume" in (tmp_path / "flow.log").read_text()
    state = stored(db)
    assert {s.state for s in state["suggestions"]} == {"cancelled"}
    assert {r.failure_reason for r in state["runs"]} == {"cancelled: interrupted (Ctrl-C)"}


def test_sigterm_to_the_flows_process_group_cancels_the_sweep(prefect_api, tmp_path):
    """How a Prefect process worker carries out a cancel: SIGTERM to the flow's whole process
    group, its local Dask workers included, which die of it at once. Their trials end
    `cancelled` with the sweep, not `failed` as trials whose worker was lost (that race once
    failed tests/test_deploy.py's cancel under load)."""
    side = tmp_path / "ran.log"
    spec = write_spec(tmp_path, "terminated", budget=6, bandwidth=2, objective="tests.objectives:logged_sleep",
                      trial={"log": str(side)}, duration=(4.0, 6.0))
    db = tmp_path / "terminated.duckdb"
    log = tmp_path / "flow.log"
    flow = start_flow(spec, "--db", str(db), "--no-report", env=flow_env(prefect_api), log=log, own_group=True)
    wait_for(lambda: len(SideLog.read(side).running()) == 2, 300, "two trials running")
    os.killpg(flow.pid, signal.SIGTERM)
    assert flow.wait(timeout=60) == 130, log.read_text()[-3000:]
    assert "sweep stopped: terminated (SIGTERM); 2 trial(s) cancelled" in log.read_text()
    state = stored(db)
    assert {s.state for s in state["suggestions"]} == {"cancelled"}
    assert {r.failure_reason for r in state["runs"]} == {"cancelled: terminated (SIGTERM)"}
    assert SideLog.read(side).started_more_than_once() == []


def test_ctrl_c_during_the_demo_ends_it_with_how_to_resume(tmp_path):
    """The demos go on with the sweep's result (the frontier, the next commands); interrupted,
    they end with the flow's message and status 130, not Prefect's TypeError traceback."""
    log = tmp_path / "demo.log"
    with open(log, "ab") as output:
        demo = subprocess.Popen([sys.executable, "-m", "paretune.flows.demo", "--db", str(tmp_path / "demo.duckdb")],
                                cwd=tmp_path, env=flow_env(None), stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)
    wait_for(lambda: "-> ok" in log.read_text(), 300, "the demo's first trial")
    os.killpg(demo.pid, signal.SIGINT)
    assert demo.wait(timeout=60) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "cancelled: " in text and "run again to resume" in text
    assert "Traceback" not in text and "frontier" not in text.lower().split("cancelled: ")[-1]


def test_the_local_prefect_server_dies_with_a_killed_flow(tmp_path):
    spec = write_spec(tmp_path, "orphan", budget=50, bandwidth=1, objective="tests.objectives:sleep_for",
                      duration=(1.0, 2.0))
    log = tmp_path / "flow.log"
    env = flow_env(None, PREFECT_HOME=str(tmp_path / "prefect"))
    for moment in ("starting", "running"):
        flow = start_flow(spec, "--db", str(tmp_path / "orphan.duckdb"), "--no-report", env=env, log=log)
        if moment == "starting":
            wait_for(lambda: any(_is_server(p) for p in descendants(flow.pid)), 60, "the server process")
        else:
            wait_for(lambda: log.read_text().count("trial ") >= 1, 180, "a trial to finish")
        children = descendants(flow.pid)
        server = [p for p in children if _is_server(p)]
        assert server, [p.cmdline() for p in children]
        flow.send_signal(signal.SIGKILL)
        flow.wait()
        assert still_alive(children, within_s=10) == [], f"orphans after a kill while {moment}"


def _is_server(process: psutil.Process) -> bool:
    try:
        return "server start" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def test_numpy_and_torch_metrics_complete_the_sweep(prefect_api, tmp_path):
    spec = write_spec(tmp_path, "numpy", budget=3, bandwidth=1, objective="tests.objectives:numpy_and_torch_metrics")
    db = tmp_path / "numpy.duckdb"
    flow = start_flow(spec, "--db", str(db), "--no-report", env=flow_env(prefect_api), log=tmp_path / "flow.log")
    assert flow.wait(timeout=300) == 0, (tmp_path / "flow.log").read_text()[-3000:]
    state = stored(db)
    assert [o.failed for o in state["observations"]] == [False] * 3
    assert all(run.metrics["steps"] == 12.0 for run in state["runs"])

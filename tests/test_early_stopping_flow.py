"""Early stopping in the tune flow, on real Dask workers, a real Prefect API and a DuckDB file.

What really ran is counted through a side file the objective writes (`learning_curve`), never
through the code under test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from paretune.flows.tune import ExperimentSource, TuneOptions, tune
from paretune.storage import DuckDBStorage
from paretune.trial import TrialContext
from sweeps import ROOT, flow_env, wait_for
from tests.objectives import _append

pytestmark = pytest.mark.slow
OBJECTIVE = "tests.test_early_stopping_flow:learning_curve"


def learning_curve(assignments: dict[str, Any], context: TrialContext) -> dict[str, float]:
    """f1 grows by `quality` each epoch (by 10 / suggestion id with `settings.worse_later`); size is
    fixed. Obeys "stop" unless `settings.ignore_stop`.

    Side file lines: "start SUGGESTION PID", "checkpoint SUGGESTION N STOP", "return SUGGESTION".
    """
    log, epoch_s = context.settings["log"], float(context.settings.get("epoch_s", 0.3))
    _append(log, f"start {context.suggestion_id} {os.getpid()}")
    quality = 10.0 / context.suggestion_id if context.settings.get("worse_later") else float(assignments["quality"])
    values: dict[str, float] = {}
    for epoch in range(1, int(context.settings.get("epochs", 4)) + 1):
        time.sleep(epoch_s)
        values = {"f1": quality * epoch, "size": 1.0}
        stop = context.report_checkpoint(epoch, values)
        _append(log, f"checkpoint {context.suggestion_id} {epoch} {int(stop)}")
        if stop and not context.settings.get("ignore_stop"):
            break
    _append(log, f"return {context.suggestion_id}")
    return values


def write_spec(folder: Path, name: str, budget: int, trial: dict[str, Any]) -> str:
    spec = {
        "name": name,
        "parameters": [{"name": "quality", "type": "double", "bounds": {"min": 1.0, "max": 10.0}}],
        "metrics": [{"name": "f1", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
        "observation_budget": budget,
        "parallel_bandwidth": 2,
        "training_monitor": {"max_checkpoints": 4},
        "metadata": {"objective": OBJECTIVE, "trial": {"log": str(folder / f"{name}.log")} | trial,
                     "early_stopping": {"type": "pareto", "reduction_factor": 2, "min_checkpoints": 1}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def side_file(folder: Path, name: str) -> list[list[str]]:
    path = folder / f"{name}.log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_stopped_trial_closes_stopped_and_its_worker_takes_the_next_suggestion_at_once(
        prefect_api, dask_cluster, tmp_path):
    spec = write_spec(tmp_path, "obeys", budget=5, trial={"epoch_s": 0.4})
    db = str(tmp_path / "obeys.duckdb")
    result = tune(ExperimentSource(spec_path=spec), db,
                  TuneOptions(dask_address=dask_cluster.scheduler_address, report=False, seed=3))
    lines = side_file(tmp_path, "obeys")
    with DuckDBStorage(db, read_only=True) as store:
        observations = {o.suggestion_id: o for o in store.observations(result.experiment_id)}
        suggestions = {s.id: s for s in store.list_suggestions(result.experiment_id)}
        runs = {r.suggestion_id: r for r in store.list_runs(result.experiment_id)}
        decisions = {s: store.stop_decisions(s) for s in suggestions}
        progress = store.progress(result.experiment_id)

    starts = [line[1] for line in lines if line[0] == "start"]
    assert sorted(starts) == sorted(str(s) for s in suggestions), "each trial's objective called exactly once"
    stopped = [s for s, o in observations.items() if o.stopped]
    assert stopped and progress.stopped == len(stopped) and progress.failed == 0
    for suggestion_id in stopped:
        observation = observations[suggestion_id]
        told = min(n for n, (stop, _) in decisions[suggestion_id].items() if stop)
        seen = [line for line in lines if line[0] == "checkpoint" and line[1] == str(suggestion_id)]
        assert len(seen) == told and seen[-1][3] == "1", "the objective saw stop at the checkpoint decided, and obeyed"
        assert observation.values == {"f1": float(seen[-1][2]) * observation.assignments["quality"], "size": 1.0}
        assert observation.fidelity == pytest.approx(told / 4)
        assert suggestions[suggestion_id].state == "stopped" and runs[suggestion_id].status == "stopped"
    # stopped trials cost the share they trained, so more trials ran; one is started while the least a
    # trial costs (stopped at the first rung) fits, so the last may overrun the budget by less than one trial
    assert result.budget - 1 < progress.spent < result.budget + 1 and len(observations) > result.budget

    # Its worker takes the next suggestion at once: on the stopped trial's worker process, a new
    # trial starts before a trial running elsewhere reports two more checkpoints (0.4 s apart).
    pid_of = {line[1]: line[2] for line in lines if line[0] == "start"}
    for suggestion_id in stopped:
        at = lines.index(["return", str(suggestion_id)])
        later = lines[at + 1:]
        successor = next((i for i, line in enumerate(later) if line[0] == "start"
                          and line[2] == pid_of[str(suggestion_id)]), None)
        if successor is None:
            continue  # the budget was spent: nothing left to start
        elsewhere: dict[str, list[int]] = {}
        for i, line in enumerate(later):
            if line[0] == "checkpoint" and pid_of[line[1]] != pid_of[str(suggestion_id)]:
                elsewhere.setdefault(line[1], []).append(i)
        assert all(successor < indices[1] for indices in elsewhere.values() if len(indices) >= 2)


def test_a_trial_that_ignores_stop_is_ended_at_max_checkpoints(prefect_api, tmp_path):
    spec = write_spec(tmp_path, "ignores", budget=3,
                      trial={"epoch_s": 0.2, "epochs": 40, "ignore_stop": True, "worse_later": True})
    db = str(tmp_path / "ignores.duckdb")
    result = tune(ExperimentSource(spec_path=spec), db, TuneOptions(report=False, seed=1, n_workers=2))
    lines = side_file(tmp_path, "ignores")
    with DuckDBStorage(db, read_only=True) as store:
        observations = store.observations(result.experiment_id)
        stopped = [o for o in observations if o.stopped]
        checkpoints = {o.suggestion_id: store.checkpoints(o.run_id) for o in observations}
        told = {o.suggestion_id: store.stop_decisions(o.suggestion_id) for o in stopped}
    assert stopped, "the third trial, worse than both before it, is told to stop at the first rung"
    for observation in stopped:
        assert told[observation.suggestion_id][1][0] or told[observation.suggestion_id][2][0]
        assert [c["epoch"] for c in checkpoints[observation.suggestion_id]][-1] == 4  # ended at max_checkpoints
        assert observation.values == {"f1": 4 * 10.0 / observation.suggestion_id, "size": 1.0}
        assert ["return", str(observation.suggestion_id)] not in lines  # ended by the flow, not by itself
    for observation in observations:  # the ones never told to stop end at max_checkpoints too, completed
        assert max(c["epoch"] for c in checkpoints[observation.suggestion_id]) == 4
        assert observation.values == {"f1": 4 * 10.0 / observation.suggestion_id, "size": 1.0}
        assert [line[:2] for line in lines].count(["start", str(observation.suggestion_id)]) == 1


def test_a_flow_killed_mid_sweep_resumes_without_re_running_or_re_deciding(prefect_api, dask_cluster, tmp_path):
    spec = write_spec(tmp_path, "resumes", budget=6, trial={"epoch_s": 0.3})
    db = str(tmp_path / "resumes.duckdb")
    log = tmp_path / "flow.log"
    with open(log, "ab") as output:
        flow = subprocess.Popen([sys.executable, "-m", "paretune.flows.tune", spec, "--db", db, "--address",
                                 dask_cluster.scheduler_address, "--no-report"], cwd=ROOT,
                                env=flow_env(prefect_api), stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def decided_stops() -> int:
        return sum(line[0] == "checkpoint" and line[3] == "1" for line in side_file(tmp_path, "resumes"))

    try:
        wait_for(lambda: decided_stops() >= 2, 120, "two stop answers before the kill")
    finally:
        os.killpg(flow.pid, signal.SIGKILL)
        flow.wait()
    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        before = store.query("SELECT suggestion_id, checkpoint, should_stop, reasons FROM stop_decisions "
                             "ORDER BY suggestion_id, checkpoint")
        observed_before = {o.suggestion_id: o for o in store.observations(experiment.id)}
    assert before

    result = tune(ExperimentSource(spec_path=spec), db,
                  TuneOptions(dask_address=dask_cluster.scheduler_address, report=False))
    lines = side_file(tmp_path, "resumes")
    with DuckDBStorage(db, read_only=True) as store:
        after = store.query("SELECT suggestion_id, checkpoint, should_stop, reasons FROM stop_decisions "
                            "ORDER BY suggestion_id, checkpoint")
        observed_after = {o.suggestion_id: o for o in store.observations(experiment.id)}
        progress = store.progress(experiment.id)
    assert result.experiment_id == experiment.id and result.budget - 1 < progress.spent < result.budget + 1
    old = {row["suggestion_id"] for row in before}
    assert [row for row in after if row["suggestion_id"] in old] == before, "no answer re-made or changed"
    assert all(observed_after[s] == o for s, o in observed_before.items()), "nothing recorded changed"
    starts = [line[1] for line in lines if line[0] == "start"]
    assert len(starts) == len(set(starts)), "no trial ran twice"

"""The tune flow against a real Prefect API, a real two-worker Dask cluster and DuckDB files."""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

import pytest

from paretune.flows.tune import ExperimentSource, TuneOptions, tune
from paretune.storage import DuckDBStorage
from paretune.storage.report import format_number
from sweeps import write_spec

pytestmark = pytest.mark.slow


def task_run_states(experiment: str) -> dict[int, tuple[str, str | None]]:
    """Suggestion id -> (state type, state name) of the trials' Prefect task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterTags

    tagged = TaskRunFilter(tags=TaskRunFilterTags(all_=[f"experiment:{experiment}"]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=tagged)
    states = {}
    for run in runs:
        (suggestion_tag,) = (tag for tag in run.tags if tag.startswith("suggestion:"))
        states[int(suggestion_tag.removeprefix("suggestion:"))] = (run.state.type.value, run.state.name)
    return states


@pytest.fixture
def run_tune(prefect_api, dask_cluster, tmp_path):
    def run(spec_path: str, **options: Any):
        db = str(tmp_path / "tune.duckdb")
        options = {"dask_address": dask_cluster.scheduler_address} | options
        return tune(ExperimentSource(spec_path=spec_path), db, TuneOptions(**options)), db
    return run


def test_completes_the_budget_with_one_observation_per_suggestion(run_tune, tmp_path):
    spec = write_spec(tmp_path, "fast", budget=8, bandwidth=2, objective="tests.objectives:sleep_for",
                      trial={"epochs": 3})
    result, db = run_tune(spec, seed=7)

    assert (result.observations, result.completed, result.failed) == (8, 8, 0)
    with DuckDBStorage(db, read_only=True) as store:
        observations = store.observations(result.experiment_id)
        suggestions = store.list_suggestions(result.experiment_id)
        runs = store.list_runs(result.experiment_id)
        checkpoints = {run.suggestion_id: store.checkpoints(run.id) for run in runs}
    assert len(observations) == 8
    assert len({o.suggestion_id for o in observations}) == 8
    assert sorted(s.id for s in suggestions) == sorted(o.suggestion_id for o in observations)
    assert {s.state for s in suggestions} == {"completed"}
    assert all(s.started_at is not None and s.worker for s in suggestions)
    assert {run.status for run in runs} == {"completed"} and len(runs) == 8
    # where each trial ran: its worker's host and device, and the code's commit (or why there is none)
    assert all(run.host and run.device == "cpu" and (run.git_commit or run.metadata["git_commit_unavailable"])
               and run.metadata["worker"] == s.worker for run, s in zip(runs, suggestions))
    # every trial's three epochs landed in the checkpoints table against its run
    for observation in observations:
        epochs = checkpoints[observation.suggestion_id]
        assert [c["epoch"] for c in epochs] == [1, 2, 3]
        assert epochs[0]["values"]["loss"] == pytest.approx(observation.values["loss"])


def test_trials_are_prefect_task_runs_named_for_their_assignments(run_tune, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey,
                                                ArtifactFilterTaskRunId,
                                                TaskRunFilter, TaskRunFilterTags)

    spec = write_spec(tmp_path, "visible", budget=3, bandwidth=2, objective="tests.objectives:sleep_for")
    result, db = run_tune(spec)

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=["experiment:visible"])))
        flow_runs = {run.flow_run_id for run in task_runs}
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            task_run_id=ArtifactFilterTaskRunId(any_=[run.id for run in task_runs])))
        artifacts += client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=list(flow_runs))))
        artifacts = list({artifact.id: artifact for artifact in artifacts}.values())
        keys = {f"visible-{result.experiment_id}-{what}" for what in ("frontier", "thresholds", "summary")}
        reported = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=sorted(keys))))
        parents = {client.read_flow(client.read_flow_run(run.flow_run_id).flow_id).name for run in task_runs}
        per_trial = {run.id: [a for a in artifacts if a.task_run_id == run.id] for run in task_runs}
    with DuckDBStorage(db, read_only=True) as store:
        suggestions = store.list_suggestions(result.experiment_id)
        runs = store.list_runs(result.experiment_id)
        observations = {o.suggestion_id: o for o in store.observations(result.experiment_id)}
    names = sorted(run.name for run in task_runs)
    assert len(names) == 3
    with DuckDBStorage(db, read_only=True) as store:
        numbers = store.trial_numbers(result.experiment_id)
    for suggestion in suggestions:
        expected = f"trial-{numbers[suggestion.id]} duration={format_number(suggestion.assignments['duration'])}"
        assert expected in names
    assert all(run.state.is_completed() for run in task_runs)
    assert parents == {"tune"}
    assert {run.metadata["prefect_flow_run_id"] for run in runs} == {str(task_runs[0].flow_run_id)}
    # each trial's task run carries its result: assignments, metric values, duration
    for run in task_runs:
        (table,) = per_trial[run.id]
        suggestion_id = int(next(t for t in run.tags if t.startswith("suggestion:")).removeprefix("suggestion:"))
        rows = {row["field"]: row["value"] for row in json.loads(table.data)}
        assert rows["parameter duration"] == pytest.approx(observations[suggestion_id].assignments["duration"])
        assert rows["metric loss"] == pytest.approx(observations[suggestion_id].values["loss"])
        assert rows["status"] == "completed" and rows["duration_s"] > 0
    # the tune run itself carries the live report: frontier, thresholds, summary and its picture
    tune_run_id = task_runs[0].flow_run_id
    live = {a.key for a in artifacts if a.flow_run_id == tune_run_id and a.key}
    assert {f"visible-{result.experiment_id}-{what}" for what in
            ("frontier", "thresholds", "summary", "frontier-picture")} <= live
    # ... and the report flow at the end published the same set on its own run
    assert {a.flow_run_id for a in reported} - {tune_run_id} and keys <= {a.key for a in reported
                                                                       if a.flow_run_id != tune_run_id}


def test_suggestions_refill_each_slot_as_soon_as_a_trial_ends(run_tune, tmp_path):
    """No batch barrier: with durations varying 10x, every end is followed by a new start.

    Two trials that end while the loop records a turn are recorded together, then both slots
    are refilled: so each run of ends must be followed at once by as many starts.
    """
    spec = write_spec(tmp_path, "uneven", budget=10, bandwidth=2, objective="tests.objectives:sleep_for",
                      duration=(0.1, 1.0))
    result, db = run_tune(spec, seed=3)

    with DuckDBStorage(db, read_only=True) as store:
        rows = store.query(
            "SELECT 'start' AS kind, s.id, s.created_at AS t FROM suggestions s WHERE s.experiment_id = ? "
            "UNION ALL SELECT 'end', o.suggestion_id, o.created_at AS t FROM observations o WHERE o.experiment_id = ? "
            "ORDER BY t, kind",
            [result.experiment_id, result.experiment_id])
        durations = [o.duration_s for o in store.observations(result.experiment_id)]
    assert max(durations) > 3 * min(durations)
    kinds = "".join("s" if row["kind"] == "start" else "e" for row in rows)
    levels = [kinds[:i + 1].count("s") - kinds[:i + 1].count("e") for i in range(len(kinds))]
    assert kinds.startswith("ss") and kinds.count("s") == 10 and max(levels) == 2 and levels[-1] == 0
    starts_left, runs = 8, []
    for ends in re.finditer("e+", kinds):
        refills = min(len(ends.group()), starts_left)
        following = kinds[ends.end():ends.end() + refills]
        assert following == "s" * refills, f"{kinds}: the ends at {ends.start()} were not refilled first"
        if refills:
            runs.append(len(ends.group()))
        starts_left -= refills
    # A barrier (refill once every trial of a round ended) would make every run two ends long.
    assert runs.count(1) > runs.count(2), f"{kinds}: slots were refilled in rounds"


def test_failures_become_failed_observations_and_the_experiment_goes_on(run_tune, tmp_path):
    spec = write_spec(tmp_path, "faulty", budget=10, bandwidth=2, objective="tests.objectives:misbehave",
                      trial={"modes": ["ok", "raise", "nan", "hang", "oom"], "hang_s": 120})
    result, db = run_tune(spec, trial_timeout_s=3)

    assert result.observations == 10
    with DuckDBStorage(db, read_only=True) as store:
        observations = store.observations(result.experiment_id)
        runs = {run.suggestion_id: run for run in store.list_runs(result.experiment_id)}
    assert len(observations) == 10
    reasons = {o.suggestion_id: o.failure_reason for o in observations}
    modes = ["ok", "raise", "nan", "hang", "oom"]
    for suggestion_id, reason in reasons.items():
        expected = modes[suggestion_id % 5]
        if expected == "ok":
            assert reason is None
        elif expected == "raise":
            assert reason == "error: ValueError: boom"
        elif expected == "nan":
            assert reason == "diverged: metric loss: nan is not finite"
        elif expected == "hang":
            assert reason == "timeout: no result after 3 s"
        else:
            assert reason == "out_of_memory: needs 80 GiB"
        assert runs[suggestion_id].status == ("completed" if reason is None else "failed")
        assert runs[suggestion_id].failure_reason == reason
    failed = [o for o in observations if o.failed]
    assert all(o.values is None for o in failed)
    states = task_run_states("faulty")
    assert states.keys() == reasons.keys()
    for suggestion_id, reason in reasons.items():
        if reason is None:
            assert states[suggestion_id][0] == "COMPLETED"
        elif reason.startswith("timeout"):
            assert states[suggestion_id] == ("FAILED", "TimedOut")
        else:
            assert states[suggestion_id][0] == "FAILED"
    assert all(math.isfinite(v) for o in observations if not o.failed for v in o.values.values())


def test_a_lost_worker_becomes_a_failed_observation(prefect_api, tmp_path):
    import dask
    from distributed import LocalCluster

    spec = write_spec(tmp_path, "deadly", budget=4, bandwidth=1, objective="tests.objectives:misbehave",
                      trial={"modes": ["ok", "die"]})
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster:
        result = tune(ExperimentSource(spec_path=spec), str(tmp_path / "deadly.duckdb"),
                      TuneOptions(dask_address=cluster.scheduler_address, report=False))
    assert (result.observations, result.completed, result.failed) == (4, 2, 2)
    with DuckDBStorage(str(tmp_path / "deadly.duckdb"), read_only=True) as store:
        reasons = [o.failure_reason for o in store.observations(result.experiment_id) if o.failed]
    assert all(reason.startswith("worker_lost: its worker died while running it") for reason in reasons), reasons
    assert sorted(state for state, _ in task_run_states("deadly").values()) == ["COMPLETED"] * 2 + ["CRASHED"] * 2


def test_parameters_name_the_field_to_fix():
    with pytest.raises(ValueError, match="exactly one of `spec_path`"):
        ExperimentSource()
    with pytest.raises(ValueError, match="exactly one of `spec_path`"):
        ExperimentSource(spec_path="a.yaml", experiment="a")
    with pytest.raises(ValueError, match="parallelism"):
        TuneOptions(parallelism=0)


def test_trials_are_numbered_within_their_experiment_and_expected_failures_log_one_warning(run_tune, tmp_path):
    """A second experiment in the file: its trials are trial-1.. (suggestions 3..), the global id
    in a tag; an out-of-memory trial is one WARNING with its reason, no ERROR, no traceback."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType,
                                                TaskRunFilter, TaskRunFilterTags)

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # after Prefect's own filters, as its console and API handlers see them
    run_tune(write_spec(tmp_path, "earlier", budget=2, bandwidth=2, objective="tests.objectives:sleep_for"))
    spec = write_spec(tmp_path, "numbered", budget=4, bandwidth=2, objective="tests.objectives:misbehave",
                      trial={"modes": ["ok", "oom"]})  # odd suggestion ids run out of memory
    logging.getLogger("prefect.task_runs").addHandler(handler)
    try:
        result, db = run_tune(spec)
    finally:
        logging.getLogger("prefect.task_runs").removeHandler(handler)

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=["experiment:numbered"])))
        progress = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[task_runs[0].flow_run_id]), type=ArtifactFilterType(any_=["progress"])))]
    with DuckDBStorage(db, read_only=True) as store:
        suggestions = {s.id for s in store.list_suggestions(result.experiment_id)}
    (bar,) = progress  # the flow run's progress, in words too
    assert bar.data == 100.0 and bar.description == "numbered: 4 of 4 trials done, 0 running"
    assert min(suggestions) == 3 and result.failed == 2
    assert sorted(run.name.split()[0] for run in task_runs) == ["trial-1", "trial-2", "trial-3", "trial-4"]
    for run in task_runs:
        number = int(run.name.split()[0].removeprefix("trial-"))
        assert {f"trial:{number}", f"suggestion:{min(suggestions) + number - 1}"} <= set(run.tags)
    trial_records = [r for r in records if getattr(r, "task_name", None) == "run-trial"]
    warnings = [r for r in trial_records if r.levelno >= logging.WARNING]
    assert [r.levelname for r in warnings] == ["WARNING", "WARNING"]
    assert all("out_of_memory: needs 80 GiB" in r.getMessage() for r in warnings)
    assert not any("Traceback" in r.getMessage() or r.exc_text or (r.exc_info and r.exc_info[0]) for r in trial_records)

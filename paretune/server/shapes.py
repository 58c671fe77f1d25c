"""SigOpt's JSON shapes, built from paretune's records: string ids, an `object` field on each,
Unix-second timestamps, and pagination objects with `paging`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable, Iterable

from paretune.storage import ExperimentRecord, ObservationRecord, Progress, RunRecord, SuggestionRecord

CLIENT_ID = "1"  # one team per server: SigOpt's client and user ids are fixed
USER_ID = "1"
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def seconds(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def experiment_json(record: ExperimentRecord, progress: Progress, *, ai: bool = False) -> dict[str, Any]:
    """An experiment (or, `ai`, an AI experiment: `budget` and a runs progress)."""
    definition = json.loads(record.spec.to_json())
    for parameter in definition["parameters"]:
        parameter["object"] = "parameter"
        if "bounds" in parameter:
            parameter["bounds"]["object"] = "bounds"
        if "categorical_values" in parameter:
            parameter["categorical_values"] = [
                {"object": "categorical_value", "name": value, "enum_index": index}
                for index, value in enumerate(parameter["categorical_values"], start=1)]
    for metric in definition["metrics"]:
        metric |= {"object": "metric", "threshold": metric.get("threshold")}
    for task in definition.get("tasks") or ():
        task["object"] = "task"
    finished = progress.observations
    runs_progress = {"active_run_count": progress.open_suggestions, "finished_run_count": finished,
                     "total_run_count": finished + progress.open_suggestions,
                     # 0 once no trial fits: SigOpt's `experiment.loop()` asks for runs until it is
                     "remaining_budget": None if progress.budget is None else
                     0 if progress.done else progress.budget - progress.spent}
    body = {
        "object": "aiexperiment" if ai else "experiment", "id": str(record.id), "name": record.name,
        "type": definition.get("type") or "offline", "state": "deleted" if record.state == "archived" else "active",
        "created": seconds(record.created_at), "updated": seconds(record.created_at), "client": CLIENT_ID,
        "user": USER_ID, "project": record.project, "development": False,
        "parameters": definition["parameters"], "metrics": definition["metrics"],
        "conditionals": definition.get("conditionals") or [], "linear_constraints": definition.get("linear_constraints")
        or [], "tasks": definition.get("tasks"), "metadata": definition.get("metadata"),
        "num_solutions": definition.get("num_solutions") or 1, "parallel_bandwidth": definition.get("parallel_bandwidth")
        or 1, "progress": {"object": "progress", **runs_progress},
    }
    if ai:
        body["budget"] = record.budget
    else:
        body["observation_budget"] = record.budget
        body["progress"] |= {"observation_count": progress.observations,
                             "observation_budget_consumed": progress.spent,
                             "first_observation": None, "last_observation": None}
    return body


def task_json(record: ExperimentRecord, task: str | None) -> dict[str, Any] | None:
    if task is None:
        return None
    cost = next((t.cost for t in record.spec.tasks or () if t.name == task), 1.0)
    return {"object": "task", "name": task, "cost": cost}


def suggestion_json(record: ExperimentRecord, suggestion: SuggestionRecord) -> dict[str, Any]:
    state = "open" if suggestion.state == "open" else "closed"
    return {"object": "suggestion", "id": str(suggestion.id), "experiment": str(record.id),
            "assignments": suggestion.assignments, "state": state, "created": seconds(suggestion.created_at),
            "metadata": None, "task": task_json(record, suggestion.task), "deleted": suggestion.state == "cancelled"}


def queued_json(record: ExperimentRecord, queued: Any) -> dict[str, Any]:
    return {"object": "queued_suggestion", "id": str(queued.id), "experiment": str(record.id),
            "assignments": queued.assignments, "created": seconds(queued.created_at),
            "task": task_json(record, queued.task)}


def values_json(values: dict[str, float] | None, stddevs: dict[str, float] | None) -> list[dict[str, Any]]:
    return [{"object": "metric_evaluation", "name": name, "value": value,
             "value_stddev": (stddevs or {}).get(name)} for name, value in (values or {}).items()]


def observation_json(record: ExperimentRecord, observation: ObservationRecord) -> dict[str, Any]:
    values = values_json(observation.values, observation.value_stddevs)
    single = values[0] if len(values) == 1 else {}
    return {"object": "observation", "id": str(observation.id), "experiment": str(record.id),
            "suggestion": str(observation.suggestion_id), "assignments": observation.assignments,
            "failed": observation.failed, "values": values, "value": single.get("value"),
            "value_stddev": single.get("value_stddev"), "metadata": observation.metadata or None,
            "created": seconds(observation.created_at), "task": task_json(record, observation.task)}


def run_json(run: RunRecord, *, observation: int | None = None, checkpoints: int = 0,
             project: str | None = None) -> dict[str, Any]:
    """A training run; SigOpt's fields paretune has no column for live in the run's metadata."""
    stddevs = run.metadata.get("value_stddevs") or {}
    state = {"running": "active"}.get(run.status, run.status)
    return {
        "object": "training_run", "id": str(run.id), "name": run.name, "state": state,
        "assignments": run.parameters,
        "experiment": None if run.experiment_id is None else str(run.experiment_id),
        "suggestion": None if run.suggestion_id is None else str(run.suggestion_id),
        "observation": None if observation is None else str(observation),
        "values": {name: {"object": "metric_evaluation", "name": name, "value": value,
                          "value_stddev": stddevs.get(name)} for name, value in run.metrics.items()},
        "metadata": run.metadata.get("metadata") or None,
        "datasets": list(run.metadata.get("datasets") or {}), "model": run.metadata.get("model"),
        "logs": run.metadata.get("logs"), "source_code": run.metadata.get("source_code"),
        "sys_metadata": run.metadata.get("sys_metadata"), "dev_metadata": run.metadata.get("dev_metadata"),
        "checkpoint_count": checkpoints, "finished": run.status != "running", "deleted": False,
        "created": seconds(run.started_at), "updated": seconds(run.ended_at or run.started_at),
        "completed": seconds(run.ended_at), "client": CLIENT_ID, "user": USER_ID, "project": project,
        "files": [], "tags": [],
    }


def checkpoint_json(run_id: int, epoch: int, values: dict[str, float], should_stop: bool,
                    reasons: dict[str, bool]) -> dict[str, Any]:
    return {"object": "checkpoint", "id": f"{run_id}-{epoch}", "training_run": str(run_id),
            "values": values_json(values, None), "should_stop": should_stop, "stopping_reasons": reasons,
            "metadata": None, "created": None}


def paginate(items: Iterable[Any], shape: Callable[[Any], dict[str, Any]], *, key: Callable[[Any], int],
             limit: int | None, before: int | None, after: int | None) -> dict[str, Any]:
    """SigOpt's pagination: newest first; `before`/`after` are ids; `paging` says where the next
    page starts (null when there is none)."""
    ordered = sorted(items, key=key, reverse=True)
    count = len(ordered)
    if before is not None:
        ordered = [item for item in ordered if key(item) < before]
    if after is not None:
        ordered = list(reversed([item for item in ordered if key(item) > after]))
    size = min(limit or DEFAULT_PAGE, MAX_PAGE)
    page, more = ordered[:size], len(ordered) > size
    paging = {"object": "paging", "before": str(key(page[-1])) if more and after is None and page else None,
              "after": str(key(page[-1])) if more and after is not None and page else None}
    return {"object": "pagination", "count": count, "data": [shape(item) for item in page], "paging": paging}

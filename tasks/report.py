"""Report tasks: an experiment's frontier, threshold report and summary as Prefect artifacts.

The table and markdown builders are plain functions (the demo prints the same frontier); the
tasks publish them.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from storage import ExperimentRecord, Storage


def artifact_key(experiment: ExperimentRecord, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", experiment.name.lower()).strip("-") or "experiment"
    return f"{slug}-{experiment.id}-{what}"


def frontier_rows(storage: Storage, experiment: ExperimentRecord) -> list[dict[str, Any]]:
    """One row per Pareto-optimal observation: its optimized metric values, then its assignments."""
    rows = []
    for point in storage.frontier(experiment.id):
        row: dict[str, Any] = {"suggestion": point["suggestion_id"], point["metric_1"]: point["value_1"]}
        if point["metric_2"] is not None:
            row[point["metric_2"]] = point["value_2"]
        rows.append(row | point["assignments"])
    return rows


def threshold_rows(storage: Storage, experiment: ExperimentRecord) -> list[dict[str, Any]]:
    return [
        {
            "observation": row["observation_id"],
            "suggestion": row["suggestion_id"],
            "failed": row["failed"],
            "failure_reason": row["failure_reason"] or "",
            "meets_all_thresholds": row["meets_all"],
            "met": ", ".join(row["met"]),
            "violated": ", ".join(row["violated"]),
        }
        for row in storage.threshold_report(experiment.id)
    ]


def failure_kinds(reasons: dict[str, int]) -> Counter[str]:
    """Failure counts by kind: reasons read 'kind: detail' (out_of_memory, timeout, worker lost...)."""
    kinds: Counter[str] = Counter()
    for reason, count in reasons.items():
        kinds[reason.split(":", 1)[0].strip()] += count
    return kinds


def best_per_metric(storage: Storage, experiment: ExperimentRecord) -> list[dict[str, Any]]:
    """For each optimized or constraint metric, the best value among observations meeting every threshold."""
    spec = experiment.spec
    feasible = [o for o in storage.observations(experiment.id) if not o.failed and spec.meets_thresholds(o.values or {})]
    best = []
    for metric in spec.required_metrics:
        scored = [o for o in feasible if metric.name in (o.values or {})]
        if not scored:
            continue
        pick = (max if metric.objective == "maximize" else min)(scored, key=lambda o: (o.values or {})[metric.name])
        best.append({"metric": metric.name, "objective": metric.objective, "value": (pick.values or {})[metric.name],
                     "suggestion": pick.suggestion_id, "assignments": pick.assignments})
    return best


def summary_markdown(storage: Storage, experiment: ExperimentRecord) -> str:
    progress = storage.progress(experiment.id)
    budget = progress.budget
    lines = [
        f"# {experiment.name} (experiment {experiment.id})",
        "",
        f"**Budget used:** {progress.observations} of {budget if budget is not None else 'unlimited'} observations "
        f"({progress.completed} completed, {progress.failed} failed, {progress.open_suggestions} open).",
        "",
        "## Failures by reason",
        "",
    ]
    if progress.failures_by_reason:
        lines += ["| kind | count |", "|---|---|"]
        lines += [f"| {kind} | {count} |" for kind, count in failure_kinds(progress.failures_by_reason).most_common()]
        lines += ["", "| reason | count |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in progress.failures_by_reason.items()]
    else:
        lines.append("No failed observations.")
    lines += ["", "## Best per metric (observations meeting every threshold)", ""]
    best = best_per_metric(storage, experiment)
    if best:
        lines += ["| metric | objective | best | suggestion | assignments |", "|---|---|---|---|---|"]
        lines += [f"| {b['metric']} | {b['objective']} | {b['value']:.6g} | {b['suggestion']} | "
                  f"{', '.join(f'{k}={v}' for k, v in b['assignments'].items())} |" for b in best]
    else:
        lines.append("No completed observation meets every threshold yet.")
    return "\n".join(lines)


@task(name="publish-frontier", cache_policy=NO_CACHE)
def publish_frontier(storage: Storage, experiment: ExperimentRecord) -> list[dict[str, Any]]:
    rows = frontier_rows(storage, experiment)
    create_table_artifact(rows, key=artifact_key(experiment, "frontier"),
                          description=f"Pareto frontier of {experiment.name}: feasible, non-dominated observations")
    return rows


@task(name="publish-threshold-report", cache_policy=NO_CACHE)
def publish_threshold_report(storage: Storage, experiment: ExperimentRecord) -> list[dict[str, Any]]:
    rows = threshold_rows(storage, experiment)
    create_table_artifact(rows, key=artifact_key(experiment, "thresholds"),
                          description=f"Every observation of {experiment.name} against the metric thresholds")
    return rows


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(storage: Storage, experiment: ExperimentRecord) -> str:
    markdown = summary_markdown(storage, experiment)
    create_markdown_artifact(markdown, key=artifact_key(experiment, "summary"),
                             description=f"Budget, failures and best values of {experiment.name}")
    return markdown

"""The report model as the JSON the pages draw from: columns, not rows, so 10^5 points stay small.

Numbers go out raw for the charts and tables (the page formats them with the same rule as
`storage.report.format_number`, in hovers, axes and tables alike); the summary's sentences are
formatted here. Trials are named by their number within the experiment (`trial_numbers`), the
one number the page shows; suggestion and observation ids stay in the data for links.
"""

from __future__ import annotations

from typing import Any

from paretune.importance import MetricImportance
from paretune.storage.records import RunRecord
from paretune.stopping import MAX_CHECKPOINTS_REASON, PARETO_REASON
from paretune.storage.report import STATUSES, ExperimentReport, Summary, format_number, threshold_rule

STATUS_CODES = {status: code for code, status in enumerate(STATUSES)}


def experiment_payload(report: ExperimentReport, importance: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`importance`: the importance payload when it is already known (so the panel draws, or says
    why not, at once)."""
    spec = report.spec
    metrics = report.shown_metrics
    parameters = list(spec.parameters)
    columns = report.columns
    staircase = report.staircase
    history = report.history
    return {
        "experiment": {"id": report.experiment.id, "name": report.experiment.name, "state": report.experiment.state},
        "version": report.version.token(),
        "summary": summary_payload(report.summary),
        "metrics": [{"name": m.name, "objective": m.objective, "strategy": m.strategy, "threshold": m.threshold,
                     "rule": threshold_rule(m) if m.threshold is not None else None} for m in metrics],
        "optimized": [m.name for m in report.optimized_metrics],
        "parameters": [{"name": p.name, "type": p.type, "log": p.is_log,
                        "categories": list(p.categorical_values) if p.categorical_values else None}
                       for p in parameters],
        # Compact columns: statuses as codes into "statuses", the frontier as indices, failure
        # reasons only where there is one; the page expands them (index i is observation number i + 1).
        "statuses": list(STATUSES),
        "points": {
            "observation": columns.observation_id,
            "suggestion": columns.suggestion_id,
            "trial": columns.trial,
            "run": columns.run_id,
            "status": [STATUS_CODES[status] for status in columns.status],
            "frontier": [i for i, on in enumerate(columns.on_frontier) if on],
            "reason": {str(i): reason for i, reason in enumerate(columns.failure_reason) if reason is not None},
            "duration": columns.duration_s,
            "values": {m.name: columns.values[m.name] for m in metrics},
            "margins": columns.margins,
            "assignments": columns.assignments,
        },
        "staircase": {"x": [x for x, _ in staircase], "y": [y for _, y in staircase]},
        "history": {
            "kind": history.kind,
            "metrics": list(history.metrics),
            "x": [s.observations for s in history.steps] + ([history.total_observations] if history.steps else []),
            "y": [s.value for s in history.steps] + ([history.steps[-1].value] if history.steps else []),
            "current": format_number(history.current),
            "reference": ", ".join(f"{name} {format_number(value)} ({history.reference_source[name]})"
                                   for name, value in history.reference.items()),
        },
        "importance": importance,
        "thresholds": [
            {"metric": t.metric.name, "strategy": t.metric.strategy, "rule": t.rule, "met": t.met,
             "violated": t.violated, "best_value": format_number(t.best_value),
             "best_margin": format_number(t.best_margin), "median_margin": format_number(t.median_margin)}
            for t in report.thresholds
        ],
    }


def summary_payload(summary: Summary) -> dict[str, Any]:
    return {
        "id": summary.experiment_id,
        "name": summary.name,
        "state": summary.state,
        "running": summary.running,
        "budget": summary.budget,
        "budget_used": summary.budget_used,
        "remaining": summary.remaining,
        "observations": summary.observations,
        "completed": summary.completed,
        "failed": summary.failed,
        "feasible": summary.feasible,
        "infeasible": summary.infeasible,
        "open": summary.open_suggestions,
        "failures_by_reason": [[reason, n] for reason, n in summary.failures_by_reason.items()],
        "failures_by_kind": [[kind, n] for kind, n in summary.failures_by_kind.items()],
        "best": [{"metric": b.metric, "objective": b.objective, "strategy": b.strategy, "value": b.value,
                  "text": format_number(b.value), "trial": b.trial, "observation": b.observation_id,
                  "run": b.run_id,
                  "assignments": ", ".join(f"{k}={format_number(v)}" for k, v in b.assignments.items())}
                 for b in summary.best],
        "last_activity": summary.last_activity.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        if summary.last_activity else None,
        "created_at": summary.created_at.strftime("%Y-%m-%d %H:%M"),
    }


def importance_payload(importances: list[MetricImportance]) -> list[dict[str, Any]]:
    return [{"metric": i.metric, "importances": i.importances, "observations": i.observations, "reason": i.reason}
            for i in importances]


def run_payload(run: RunRecord, checkpoints: list[dict[str, Any]], trial: int | None,
                decisions: dict[int, tuple[bool, dict[str, bool]]]) -> dict[str, Any]:
    """`trial`: the run's trial number within its experiment (None for a run outside one);
    `decisions`: the store's answers to the trial's checkpoints (`stop_decisions`), by number."""
    duration = (run.ended_at - run.started_at).total_seconds() if run.ended_at else None
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "experiment_id": run.experiment_id,
        "suggestion_id": run.suggestion_id,
        "trial": trial,
        "failure_reason": run.failure_reason,
        "parameters": run.parameters,
        "metrics": run.metrics,
        "metadata": run.metadata,
        "environment": {"host": run.host, "device": run.device, "git_commit": run.git_commit,
                        "started": run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                        "ended": run.ended_at.strftime("%Y-%m-%d %H:%M:%S") if run.ended_at else None,
                        "duration_s": duration},
        "checkpoints": {"epoch": [c["epoch"] for c in checkpoints],
                        "values": {name: [c["values"].get(name) for c in checkpoints]
                                   for name in sorted({n for c in checkpoints for n in c["values"]})}},
        "stop": stop_marker(checkpoints, decisions),
    }


STOP_REASONS = {PARETO_REASON: "Pareto early stopping: not among the best 1/η of the trials that reached this rung",
                MAX_CHECKPOINTS_REASON: "it reached the training monitor's max_checkpoints"}


def stop_marker(checkpoints: list[dict[str, Any]], decisions: dict[int, tuple[bool, dict[str, bool]]]
                ) -> dict[str, Any] | None:
    """Where the trial was first told to stop (None if never): its checkpoint number, that
    checkpoint's epoch, the rung when the Pareto rule spoke (rungs are checkpoint numbers), the
    reasons that held, and one sentence for the page."""
    told = sorted(count for count, (should_stop, _) in decisions.items() if should_stop)
    if not told:
        return None
    count = told[0]
    reasons = sorted(name for name, met in decisions[count][1].items() if met)
    epoch = checkpoints[count - 1]["epoch"] if count <= len(checkpoints) else None
    rung = count if PARETO_REASON in reasons else None
    why = "; ".join(STOP_REASONS.get(name, f"SigOpt's convergence criterion {name!r} was met") for name in reasons)
    where = f"epoch {format_number(epoch)}, checkpoint {count}" if epoch is not None else f"checkpoint {count}"
    return {"checkpoint": count, "epoch": epoch, "rung": rung, "reasons": reasons,
            "text": f"Told to stop at {where}{f' (rung {rung})' if rung else ''}: {why}."}

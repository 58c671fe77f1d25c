"""An experiment in the Prefect UI: frontier table, threshold report, summary and frontier picture.

Everything is rendered from the report model (`storage.report`), so the artifacts show the same
numbers as the dashboard, the static report and `paretune frontier`, rounded by the same rule.
Keys are `<name-slug>-<id>-<what>`, unambiguous per experiment.

The picture is a PNG drawn with matplotlib and embedded as a `data:` URI in a markdown
artifact: Prefect's image artifacts need a public URL, and the UI renders a markdown image
from a data URI with no network (tests/test_prefect_artifacts_ui.py proves it in Chromium).

Two ways to publish the same set:
- the `publish-*` tasks, which the `report` flow runs (one task run each);
- `publish_live_report(storage, experiment_id)`, a plain function the tune loop calls while it
  runs: it creates the artifacts on the current flow run once, then updates them in place
  when the experiment has changed.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import numpy as np
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.context import FlowRunContext

from paretune.storage import ExperimentRecord, Storage
from paretune.storage.report import (ExperimentReport, Point, experiment_report, format_number, frontier_points,
                            report_version, threshold_rule)

# The threshold table lists the latest observations only: a Prefect table is for reading, and
# the dashboard, the static report and the `threshold_report` view hold every row.
THRESHOLD_ROWS = 500
STATIC_REPORT_DESCRIPTION = "The dashboard's experiment page as one self-contained HTML file"
COLORS = {"feasible": "#2563eb", "infeasible": "#f59e0b", "failed": "#dc2626", "frontier": "#111827"}


def artifact_key(experiment: ExperimentRecord, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", experiment.name.lower()).strip("-") or "experiment"
    return f"{slug}-{experiment.id}-{what}"


# -- what the artifacts hold ------------------------------------------------------------------
def frontier_table(report_or_points: ExperimentReport | tuple[ExperimentRecord, tuple[Point, ...]]
                   ) -> list[dict[str, str]]:
    """One row per Pareto-optimal observation: trial, run, each optimized/constraint metric, assignments."""
    if isinstance(report_or_points, ExperimentReport):
        record, points = report_or_points.experiment, report_or_points.frontier
    else:
        record, points = report_or_points
    metrics = [m.name for m in record.spec.metrics if m.strategy != "store"]
    return [
        {"trial": str(p.suggestion_id), "run": format_number(p.run_id),
         **{name: format_number(p.values.get(name)) for name in metrics},
         **{name: format_number(value) for name, value in p.assignments.items()}}
        for p in points
    ]


def frontier_rows(storage: Storage, experiment: ExperimentRecord) -> list[dict[str, str]]:
    """The frontier table read straight from the store (the frontier only, not every observation)."""
    return frontier_table(frontier_points(storage, experiment.id))


def threshold_table(report: ExperimentReport, limit: int = THRESHOLD_ROWS) -> list[dict[str, str]]:
    """The latest `limit` observations against each threshold: value, then margin (+ clears, - misses)."""
    rows = []
    for row in reversed(report.threshold_rows(limit)):
        cells = {"trial": str(row.point.suggestion_id), "status": row.point.status}
        for check in row.checks:
            cells[check.metric] = format_number(check.value)
            cells[f"margin to {check.metric} {'>=' if check.objective == 'maximize' else '<='} "
                  f"{format_number(check.threshold)}"] = format_number(check.margin)
        cells["misses"] = ", ".join(row.violated) if row.point.status != "failed" else ""
        cells["failure"] = row.point.failure_reason or ""
        rows.append(cells)
    return rows


def summary_markdown(report: ExperimentReport, static_report_url: str | None = None) -> str:
    s = report.summary
    lines = [
        f"# {s.name} (experiment {s.experiment_id})",
        "",
        f"**Budget used:** {s.budget_used} ({format_number(s.completed)} completed: {format_number(s.feasible)} "
        f"feasible, {format_number(s.infeasible)} infeasible; {format_number(s.failed)} failed; "
        f"{format_number(s.open_suggestions)} in flight).",
        "",
        _state_line(report),
        "",
        "## Best per metric (observations meeting every threshold)",
        "",
    ]
    if s.best:
        lines += ["| metric | objective | best | trial | run | assignments |", "|---|---|---:|---:|---:|---|"]
        lines += [f"| {b.metric} | {b.objective} | {format_number(b.value)} | {b.suggestion_id} | "
                  f"{format_number(b.run_id)} | {_assignments(b.assignments)} |" for b in s.best]
    else:
        lines.append("No completed observation meets every threshold yet.")
    summaries = report.threshold_summaries()
    if summaries:
        lines += ["", "## Thresholds", "",
                  "A margin is how far a value clears (+) or misses (-) the threshold, in the metric's units.", "",
                  "| metric | threshold | met | missed | best value | best margin | median margin |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {t.metric.name} | {t.rule} | {t.met} | {t.violated} | {format_number(t.best_value)} | "
                  f"{format_number(t.best_margin)} | {format_number(t.median_margin)} |" for t in summaries]
    lines += ["", "## Failures", ""]
    if s.failures_by_reason:
        lines += ["| kind | count |", "|---|---:|"]
        lines += [f"| {kind} | {count} |" for kind, count in s.failures_by_kind.items()]
        lines += ["", "| reason | count |", "|---|---:|"]
        lines += [f"| {_cell(reason)} | {count} |" for reason, count in s.failures_by_reason.items()]
    else:
        lines.append("No failed observations.")
    if static_report_url:
        lines += ["", f"**Static report** (the dashboard page as one file): [{static_report_url}]({static_report_url})"]
    return "\n".join(lines)


def _state_line(report: ExperimentReport) -> str:
    history = "Hypervolume" if report.history.kind == "hypervolume" else f"Best {report.history.metrics[0]}"
    line = (f"**Frontier:** {len(report.frontier)} point(s). "
            f"**{history}:** {format_number(report.history.current) or 'none yet'}.")
    if report.summary.last_activity:
        line += f" **Last activity:** {report.summary.last_activity:%Y-%m-%d %H:%M:%S %Z}."
    return line


def _assignments(assignments: dict[str, Any]) -> str:
    return _cell(", ".join(f"{k}={format_number(v)}" for k, v in assignments.items()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def frontier_png(report: ExperimentReport) -> bytes:
    """The frontier as a picture: every observation styled by status, the frontier as a step
    line, thresholds dashed, failed trials (which have no values) in a strip below."""
    from matplotlib.figure import Figure

    optimized = report.optimized_metrics
    two = len(optimized) == 2
    x_metric, y_metric = (optimized[0], optimized[1]) if two else (None, optimized[0])
    columns = report.columns
    status = np.array(columns.status, dtype=object)
    on_frontier = np.array(columns.on_frontier, dtype=bool)
    numbers = np.arange(1, len(columns) + 1)
    counts = {name: int(np.sum(status == name)) for name in ("feasible", "infeasible", "failed")}
    figure = Figure(figsize=(9, 6.2 if counts["failed"] else 5.6), dpi=100, layout="constrained")
    if counts["failed"]:
        axes, strip = figure.subplots(2, 1, height_ratios=[9, 1])
    else:
        axes, strip = figure.subplots(1, 1), None

    def xy(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs = columns.array(x_metric.name)[mask] if two else numbers[mask]  # type: ignore[union-attr]
        return xs, columns.array(y_metric.name)[mask]

    big = len(columns) > 5000
    size = 8 if big else 30
    axes.scatter(*xy((status == "feasible") & ~on_frontier), s=size, color=COLORS["feasible"], alpha=0.6,
                 linewidths=0, label=f"feasible ({format_number(counts['feasible'])})", rasterized=big)
    axes.scatter(*xy(status == "infeasible"), s=size, facecolors="none", edgecolors=COLORS["infeasible"],
                 linewidths=1.2, label=f"infeasible ({format_number(counts['infeasible'])})", rasterized=big)
    axes.scatter(*xy(on_frontier), s=55, color=COLORS["feasible"], edgecolors=COLORS["frontier"],
                 linewidths=1.8, zorder=3, label=f"frontier ({len(report.frontier)})")
    if two:
        corners = report.staircase()
        if corners:
            axes.plot([c[0] for c in corners], [c[1] for c in corners], color=COLORS["frontier"], linewidth=1.6,
                      zorder=2)
    elif report.history.steps:
        steps = report.history.steps
        axes.step([s.observations for s in steps] + [report.history.total_observations],
                  [s.value for s in steps] + [steps[-1].value], where="post", color=COLORS["frontier"],
                  linewidth=1.6, label="best so far")
    for metric, vertical in ((x_metric, True), (y_metric, False)):
        if metric is None or metric.threshold is None:
            continue
        line = axes.axvline if vertical else axes.axhline
        line(metric.threshold, color="#6b7280", linestyle="--", linewidth=1.2)
        axes.annotate(f"threshold {threshold_rule(metric)}", xy=(metric.threshold, 1) if vertical else (1, metric.threshold),
                      xycoords=("data", "axes fraction") if vertical else ("axes fraction", "data"),
                      xytext=(4, -4) if vertical else (-4, 4), textcoords="offset points",
                      ha="left" if vertical else "right", va="top" if vertical else "bottom", fontsize=9, color="#4b5563")
    axes.set_xlabel(_axis_label(x_metric) if two else "trial number")
    axes.set_ylabel(_axis_label(y_metric))
    axes.grid(True, color="#e5e7eb", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    title = (f"{report.experiment.name}: {x_metric.name} against {y_metric.name}" if two  # type: ignore[union-attr]
             else f"{report.experiment.name}: {y_metric.name} by trial")
    axes.set_title(title, loc="left", fontsize=12, fontweight="bold")
    if strip is not None:
        failed = numbers[status == "failed"]
        strip.scatter(failed, np.zeros(len(failed)), marker="x", s=36, color=COLORS["failed"],
                      linewidths=1.6, label=f"failed ({format_number(len(failed))})")
        strip.set_xlim(0, len(columns) + 1)
        strip.set_yticks([])
        strip.set_ylim(-1, 1)
        strip.set_xlabel("failed trials (no metric values), by trial number", fontsize=9)
        for side in ("top", "right", "left"):
            strip.spines[side].set_visible(False)
        handles, labels = axes.get_legend_handles_labels()
        strip_handles, strip_labels = strip.get_legend_handles_labels()
        axes.legend(handles + strip_handles, labels + strip_labels, loc="best", fontsize=9, framealpha=0.9)
    else:
        axes.legend(loc="best", fontsize=9, framealpha=0.9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _axis_label(metric: Any) -> str:
    return f"{metric.name} ({'maximize' if metric.objective == 'maximize' else 'minimize'})"


def picture_markdown(report: ExperimentReport, static_report_url: str | None = None) -> str:
    image = base64.b64encode(frontier_png(report)).decode()
    s = report.summary
    lines = [
        f"![Pareto frontier of {report.experiment.name}](data:image/png;base64,{image})",
        "",
        f"{len(report.frontier)} frontier point(s) among {format_number(s.observations)} observations: "
        f"{format_number(s.feasible)} feasible, {format_number(s.infeasible)} infeasible, "
        f"{format_number(s.failed)} failed.",
    ]
    if static_report_url:
        lines += ["", f"Interactive version: [{static_report_url}]({static_report_url})"]
    return "\n".join(lines)


# -- the report flow's tasks ----------------------------------------------------------------------
def _descriptions(report: ExperimentReport) -> dict[str, str]:
    name, total = report.experiment.name, report.summary.observations
    shown = min(total, THRESHOLD_ROWS)
    return {
        "frontier": f"Pareto frontier of {name}: feasible, non-dominated observations",
        "thresholds": f"The latest {shown} of {format_number(total)} observations of {name} against each threshold "
                      "(value, margin)",
        "summary": f"Budget, best values, thresholds and failures of {name}",
        "frontier-picture": f"Every observation of {name}, the frontier and the thresholds",
    }


@task(name="publish-frontier", cache_policy=NO_CACHE)
def publish_frontier(report: ExperimentReport) -> list[dict[str, str]]:
    rows = frontier_table(report)
    create_table_artifact(rows, key=artifact_key(report.experiment, "frontier"),
                          description=_descriptions(report)["frontier"])
    return rows


@task(name="publish-threshold-report", cache_policy=NO_CACHE)
def publish_threshold_report(report: ExperimentReport) -> list[dict[str, str]]:
    rows = threshold_table(report)
    create_table_artifact(rows, key=artifact_key(report.experiment, "thresholds"),
                          description=_descriptions(report)["thresholds"])
    return rows


@task(name="publish-summary", cache_policy=NO_CACHE)
def publish_summary(report: ExperimentReport, static_report_url: str | None = None) -> str:
    markdown = summary_markdown(report, static_report_url)
    create_markdown_artifact(markdown, key=artifact_key(report.experiment, "summary"),
                             description=_descriptions(report)["summary"])
    return markdown


@task(name="publish-frontier-picture", cache_policy=NO_CACHE)
def publish_frontier_picture(report: ExperimentReport, static_report_url: str | None = None) -> UUID:
    return create_markdown_artifact(picture_markdown(report, static_report_url),
                                    key=artifact_key(report.experiment, "frontier-picture"),
                                    description=_descriptions(report)["frontier-picture"])


@task(name="publish-static-report-link", cache_policy=NO_CACHE)
def publish_static_report_link(report: ExperimentReport, url: str) -> UUID:
    return create_link_artifact(url, link_text=_link_text(report), key=artifact_key(report.experiment, "static-report"),
                                description=STATIC_REPORT_DESCRIPTION)


def _link_text(report: ExperimentReport) -> str:
    return f"{report.experiment.name}: static report"


# -- the live report on the tune flow's own run -------------------------------------------------
@dataclass
class _LiveArtifacts:
    version: str | None = None
    ids: dict[str, UUID] = field(default_factory=dict)


_live: dict[tuple[UUID, int], _LiveArtifacts] = {}
_live_lock = threading.Lock()


def publish_live_report(storage: Storage, experiment_id: int, *, static_report_url: str | None = None) -> bool:
    """Create or update the frontier table, threshold report, summary and frontier picture of
    `experiment_id` on the current flow run; return False when nothing changed since this flow
    run's last call (then it costs one small query).

    A plain function, not a task: call it from the flow run's thread (the tune loop) as often
    as every few trials. The first call creates the four artifacts (keyed per experiment);
    later calls update the same artifacts in place, so the run's Artifacts tab holds one of
    each. A new `static_report_url` is added to the summary and the picture.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("publish_live_report publishes on the current flow run: call it inside a flow")
    run_key = (context.flow_run.id, experiment_id)
    token = f"{report_version(storage, experiment_id).token()}|{static_report_url}"
    with _live_lock:
        live = _live.setdefault(run_key, _LiveArtifacts())
        if live.version == token:
            return False
        report = experiment_report(storage, experiment_id)
        descriptions = _descriptions(report)
        contents = {
            "frontier": ("table", frontier_table(report)),
            "thresholds": ("table", threshold_table(report)),
            "summary": ("markdown", summary_markdown(report, static_report_url)),
            "frontier-picture": ("markdown", picture_markdown(report, static_report_url)),
        }
        if static_report_url:
            contents["static-report"] = ("link", static_report_url)
            descriptions["static-report"] = STATIC_REPORT_DESCRIPTION
        with get_client(sync_client=True) as client:
            for what, (kind, data) in contents.items():
                key = artifact_key(report.experiment, what)
                if what in live.ids:
                    client.update_artifact(live.ids[what], ArtifactUpdate(
                        data=_artifact_data(kind, data, report), description=descriptions[what]))
                elif kind == "table":
                    live.ids[what] = create_table_artifact(data, key=key, description=descriptions[what])
                elif kind == "markdown":
                    live.ids[what] = create_markdown_artifact(data, key=key, description=descriptions[what])
                else:
                    live.ids[what] = create_link_artifact(data, link_text=_link_text(report), key=key,
                                                          description=descriptions[what])
        live.version = token
        return True


def _artifact_data(kind: str, data: Any, report: ExperimentReport) -> str:
    """An artifact's stored `data`, as Prefect's create functions would have written it."""
    if kind == "table":
        return json.dumps(data)
    if kind == "link":
        return f"[{_link_text(report)}]({data})"
    return data

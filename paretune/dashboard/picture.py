"""The frontier as a PNG picture (matplotlib): the Prefect artifact and the demo's file.

Drawn from the report model only, so its points and frontier are the dashboard's.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from paretune.storage.report import ExperimentReport, format_number, threshold_rule

COLORS = {"feasible": "#2563eb", "infeasible": "#f59e0b", "failed": "#dc2626", "frontier": "#111827",
          "stopped": "#6b7280"}


def frontier_png(report: ExperimentReport) -> bytes:
    """The frontier as a picture: every observation styled by status, the frontier as a step
    line, thresholds dashed, failed trials (which have no values) in a strip below."""
    from matplotlib.figure import Figure

    status = np.array(report.columns.status, dtype=object)
    failed = np.array(report.columns.trial)[status == "failed"]
    figure = Figure(figsize=(9, 6.2 if len(failed) else 5.6), dpi=100, layout="constrained")
    if len(failed):
        axes, strip = figure.subplots(2, 1, height_ratios=[9, 1])
    else:
        axes, strip = figure.subplots(1, 1), None
    _draw_points(axes, report, status)
    _draw_thresholds(axes, report)
    _style(axes, report)
    handles, labels = axes.get_legend_handles_labels()
    if strip is not None:
        failures = _draw_failures(strip, failed, max(report.columns.trial, default=0))
        handles, labels = handles + [failures], labels + [failures.get_label()]
    axes.legend(handles, labels, loc="best", fontsize=9, framealpha=0.9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _axes_metrics(report: ExperimentReport) -> tuple[Any, Any]:
    """(x, y) metrics: the two optimized metrics, or (None: trial number, the one metric)."""
    optimized = report.optimized_metrics
    return (optimized[0], optimized[1]) if len(optimized) == 2 else (None, optimized[0])


def _draw_points(axes: Any, report: ExperimentReport, status: np.ndarray) -> None:
    """Feasible, infeasible and frontier points; the frontier's staircase or the best-so-far line."""
    columns = report.columns
    x_metric, y_metric = _axes_metrics(report)
    on_frontier = np.array(columns.on_frontier, dtype=bool)
    numbers = np.array(columns.trial)

    def xy(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs = numbers[mask] if x_metric is None else columns.array(x_metric.name)[mask]
        return xs, columns.array(y_metric.name)[mask]

    big = len(columns) > 5000
    size = 8 if big else 30
    feasible, infeasible = int(np.sum(status == "feasible")), int(np.sum(status == "infeasible"))
    axes.scatter(*xy((status == "feasible") & ~on_frontier), s=size, color=COLORS["feasible"], alpha=0.6,
                 linewidths=0, label=f"feasible ({format_number(feasible)})", rasterized=big)
    axes.scatter(*xy(status == "infeasible"), s=size, facecolors="none", edgecolors=COLORS["infeasible"],
                 linewidths=1.2, label=f"infeasible ({format_number(infeasible)})", rasterized=big)
    stopped = int(np.sum(status == "stopped"))
    if stopped:
        axes.scatter(*xy(status == "stopped"), s=size, marker="v", color=COLORS["stopped"], alpha=0.7, linewidths=0,
                     label=f"stopped early ({format_number(stopped)})", rasterized=big)
    axes.scatter(*xy(on_frontier), s=55, color=COLORS["feasible"], edgecolors=COLORS["frontier"],
                 linewidths=1.8, zorder=3, label=f"frontier ({len(report.frontier)})")
    if x_metric is not None and report.staircase:
        axes.plot([c[0] for c in report.staircase], [c[1] for c in report.staircase], color=COLORS["frontier"],
                  linewidth=1.6, zorder=2)
    elif x_metric is None and report.history.steps:
        steps = report.history.steps
        axes.step([s.observations for s in steps] + [report.history.total_observations],
                  [s.value for s in steps] + [steps[-1].value], where="post", color=COLORS["frontier"],
                  linewidth=1.6, label="best so far")


def _draw_thresholds(axes: Any, report: ExperimentReport) -> None:
    for metric, vertical in zip(_axes_metrics(report), (True, False)):
        if metric is None or metric.threshold is None:
            continue
        line = axes.axvline if vertical else axes.axhline
        line(metric.threshold, color="#6b7280", linestyle="--", linewidth=1.2)
        axes.annotate(f"threshold {threshold_rule(metric)}", xy=(metric.threshold, 1) if vertical else (1, metric.threshold),
                      xycoords=("data", "axes fraction") if vertical else ("axes fraction", "data"),
                      xytext=(4, -4) if vertical else (-4, 4), textcoords="offset points",
                      ha="left" if vertical else "right", va="top" if vertical else "bottom", fontsize=9, color="#4b5563")


def _style(axes: Any, report: ExperimentReport) -> None:
    x_metric, y_metric = _axes_metrics(report)
    axes.set_xlabel("trial number" if x_metric is None else _axis_label(x_metric))
    axes.set_ylabel(_axis_label(y_metric))
    axes.grid(True, color="#e5e7eb", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    title = (f"{report.experiment.name}: {y_metric.name} by trial" if x_metric is None
             else f"{report.experiment.name}: {x_metric.name} against {y_metric.name}")
    axes.set_title(title, loc="left", fontsize=12, fontweight="bold")


def _draw_failures(strip: Any, failed: np.ndarray, total: int) -> Any:
    """Failed trials (no values to place) as crosses on a strip, by trial number; their legend handle."""
    handle = strip.scatter(failed, np.zeros(len(failed)), marker="x", s=36, color=COLORS["failed"],
                           linewidths=1.6, label=f"failed ({format_number(len(failed))})")
    strip.set_xlim(0, total + 1)
    strip.set_yticks([])
    strip.set_ylim(-1, 1)
    strip.set_xlabel("failed trials (no metric values), by trial number", fontsize=9)
    for side in ("top", "right", "left"):
        strip.spines[side].set_visible(False)
    return handle


def _axis_label(metric: Any) -> str:
    return f"{metric.name} ({'maximize' if metric.objective == 'maximize' else 'minimize'})"

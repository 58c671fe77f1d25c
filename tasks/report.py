"""An experiment in the Prefect UI: frontier table, threshold report, summary and frontier picture.

Everything is rendered from the report model (`storage.report`), so the artifacts show the same
numbers as the dashboard, the static report and `paretune frontier`, rounded by the same rule.
Keys are `<name-slug>-<id>-<what>`, unambiguous per experiment.

The picture (`paretune.dashboard.picture`) is a PNG embedded as a `data:` URI in a markdown
artifact: Prefect's image artifacts need a public URL, and the UI renders a markdown image
from a data URI with no network (tests/test_prefect_artifacts_ui.py proves it in Chromium).

Two ways to publish the same set (`report_artifacts`):
- the `publish-report` task, which the `report` flow runs;
- `LiveReport(storage, experiment_id).publish()`, which the tune loop calls while it runs: it
  creates the artifacts on the current flow run once, then updates them in place when the
  experiment has changed.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.context import FlowRunContext

from paretune.dashboard.picture import frontier_png
from paretune.storage import ExperimentRecord, Storage
from paretune.storage.report import ExperimentReport, experiment_report, format_number, frontier_table, report_version

# The threshold table lists the latest observations only: a Prefect table is for reading, and
# the dashboard, the static report and the `threshold_report` view hold every row.
THRESHOLD_ROWS = 500
STATIC_REPORT_DESCRIPTION = "The dashboard's experiment page as one self-contained HTML file"


def artifact_key(experiment: ExperimentRecord, what: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", experiment.name.lower()).strip("-") or "experiment"
    return f"{slug}-{experiment.id}-{what}"


# -- what the artifacts hold ------------------------------------------------------------------
def frontier_artifact_rows(report: ExperimentReport) -> list[dict[str, str]]:
    """The report model's frontier table as a Prefect table artifact's rows."""
    header, rows = frontier_table(report.spec, report.frontier)
    return [dict(zip(header, row)) for row in rows]


def threshold_table(report: ExperimentReport, limit: int = THRESHOLD_ROWS) -> list[dict[str, str]]:
    """The latest `limit` observations against each threshold: value, then margin (+ clears, - misses)."""
    rows = []
    for row in reversed(report.threshold_rows(limit)):
        cells = {"trial": str(row.point.trial), "status": row.point.status, "failure": row.point.failure_reason or ""}
        for check in row.checks:
            cells[check.metric] = format_number(check.value)
            cells[f"margin to {check.metric} {'>=' if check.objective == 'maximize' else '<='} "
                  f"{format_number(check.threshold)}"] = format_number(check.margin)
        cells["misses"] = ", ".join(row.violated) if row.point.status != "failed" else ""
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
        *([f"**Stopped early:** {format_number(s.stopped)} trial(s), saving "
           f"{format_number(round(s.full_trials_saved, 2))} full trials' worth of training."] if s.stopped else []),
        "",
        _state_line(report),
        "",
        "## Best per metric (observations meeting every threshold)",
        "",
    ]
    if s.best:
        lines += ["| metric | objective | best | trial | run | assignments |", "|---|---|---:|---:|---:|---|"]
        lines += [f"| {b.metric} | {b.objective} | {format_number(b.value)} | {b.trial} | "
                  f"{format_number(b.run_id)} | {_assignments(b.assignments)} |" for b in s.best]
    else:
        lines.append("No completed observation meets every threshold yet.")
    summaries = report.thresholds
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


# -- publishing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactContent:
    """One artifact of an experiment's report: its key suffix, Prefect kind, data and description."""

    what: str
    kind: Literal["table", "markdown", "link"]
    data: Any
    description: str


def report_artifacts(report: ExperimentReport, static_report_url: str | None = None) -> list[ArtifactContent]:
    """The set an experiment's report publishes, the same for the report flow and the live report."""
    name, total = report.experiment.name, report.summary.observations
    contents = [
        ArtifactContent("frontier", "table", frontier_artifact_rows(report),
                        f"Pareto frontier of {name}: feasible, non-dominated observations"),
        ArtifactContent("thresholds", "table", threshold_table(report),
                        f"The latest {min(total, THRESHOLD_ROWS)} of {format_number(total)} observations of {name} "
                        "against each threshold (value, margin)"),
        ArtifactContent("summary", "markdown", summary_markdown(report, static_report_url),
                        f"Budget, best values, thresholds and failures of {name}"),
        ArtifactContent("frontier-picture", "markdown", picture_markdown(report, static_report_url),
                        f"Every observation of {name}, the frontier and the thresholds"),
    ]
    if static_report_url:
        contents.append(ArtifactContent("static-report", "link", static_report_url, STATIC_REPORT_DESCRIPTION))
    return contents


def create_artifact(report: ExperimentReport, content: ArtifactContent) -> UUID:
    key = artifact_key(report.experiment, content.what)
    if content.kind == "table":
        return create_table_artifact(content.data, key=key, description=content.description)
    if content.kind == "markdown":
        return create_markdown_artifact(content.data, key=key, description=content.description)
    return create_link_artifact(content.data, link_text=_link_text(report), key=key, description=content.description)


def _artifact_data(report: ExperimentReport, content: ArtifactContent) -> str:
    """An artifact's stored `data`, as Prefect's create functions would have written it."""
    if content.kind == "table":
        return json.dumps(content.data)
    if content.kind == "link":
        return f"[{_link_text(report)}]({content.data})"
    return content.data


def _link_text(report: ExperimentReport) -> str:
    return f"{report.experiment.name}: static report"


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(report: ExperimentReport, static_report_url: str | None = None) -> list[ArtifactContent]:
    """Publish the report's artifacts on the current flow run; return what was published."""
    contents = report_artifacts(report, static_report_url)
    for content in contents:
        create_artifact(report, content)
    return contents


class LiveReport:
    """The tune loop's live report on its own flow run: the artifacts are created on the first
    `publish()`, then updated in place whenever the experiment has changed, so the run's
    Artifacts tab holds one of each.

    Call `publish()` from the flow run's thread as often as every few trials: when nothing
    changed since the last call it costs one small query and returns False.
    """

    def __init__(self, storage: Storage, experiment_id: int, static_report_url: str | None = None):
        self.storage = storage
        self.experiment_id = experiment_id
        self.static_report_url = static_report_url
        self._version: str | None = None
        self._ids: dict[str, UUID] = {}
        self._lock = threading.Lock()

    def publish(self) -> bool:
        if FlowRunContext.get() is None:
            raise RuntimeError("LiveReport publishes on the current flow run: call it inside a flow")
        token = report_version(self.storage, self.experiment_id).token()
        with self._lock:
            if self._version == token:
                return False
            report = experiment_report(self.storage, self.experiment_id)
            with get_client(sync_client=True) as client:
                for content in report_artifacts(report, self.static_report_url):
                    if content.what in self._ids:
                        client.update_artifact(self._ids[content.what], ArtifactUpdate(
                            data=_artifact_data(report, content), description=content.description))
                    else:
                        self._ids[content.what] = create_artifact(report, content)
            self._version = token
            return True

"""Report an experiment in the Prefect UI: frontier table, threshold report, summary and picture.

Runs on its own (`report` deployment, `python -m paretune.flows.report EXPERIMENT`) and at the end of
every tune flow. It reads the store read-only, once, into the report model; with `html` it also
writes the static report (a local path or s3://) and links it from the artifacts.
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote
from pydantic import BaseModel

from paretune.storage import DuckDBStorage, StorageError, default_db_path
from paretune.storage.report import ExperimentReport, experiment_report
from paretune.tasks.report import publish_report


class ReportResult(BaseModel):
    experiment_id: int
    frontier: list[dict]
    summary: str
    static_report: str | None = None


def read_report(experiment: str, db_path: str) -> ExperimentReport:
    """The report model of `experiment` (id or name); a missing file or experiment raises StorageError."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        return experiment_report(storage, experiment)


@task(name="write-static-report", cache_policy=NO_CACHE)
def static_report_task(report: ExperimentReport, url: str) -> str:
    from paretune.dashboard.static_report import put_text, static_report_html

    return put_text(url, static_report_html(report))


@flow(name="report")
def report(experiment: str, db_path: str | None = None, html: str | None = None) -> ReportResult:
    """Publish the frontier, the threshold report, a summary and a frontier picture of an experiment
    (id or name); with `html`, also write the static HTML report there and link it."""
    model = read_report(experiment, db_path or default_db_path())
    static_url = static_report_task(quote(model), html) if html else None
    published = {content.what: content.data for content in publish_report(quote(model), static_url)}
    return ReportResult(experiment_id=model.experiment.id, frontier=published["frontier"],
                        summary=published["summary"], static_report=static_url)


def main(argv: list[str] | None = None, prog: str = "python -m paretune.flows.report") -> ReportResult:
    from paretune.flows.local_prefect import prefect_api

    parser = argparse.ArgumentParser(prog=prog, description=report.__doc__)
    parser.add_argument("experiment", help="id or name of the experiment")
    parser.add_argument("--db", help=f"DuckDB file (default: $PARETUNE_DB or {default_db_path()})")
    parser.add_argument("--html", metavar="PATH_OR_URL", help="also write the static HTML report (local or s3://)")
    args = parser.parse_args(argv)
    db_path = args.db or default_db_path()
    try:  # refuse a missing file or experiment before Prefect starts
        with DuckDBStorage(db_path, read_only=True) as storage:
            storage.get_experiment(args.experiment)
    except StorageError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    with prefect_api():
        result = report(args.experiment, db_path, args.html)
    print(result.summary)
    if result.static_report:
        print(f"\nStatic report: {result.static_report}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])

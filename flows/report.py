"""Report an experiment in the Prefect UI: frontier and threshold tables, and a summary.

Runs on its own (`report` deployment, `python -m flows.report EXPERIMENT`) and at the end of
every tune flow. It opens the store read-only, so it never competes with a writer for long.
"""

from __future__ import annotations

import argparse

from prefect import flow
from pydantic import BaseModel

from storage import DuckDBStorage, default_db_path
from tasks.report import publish_frontier, publish_summary, publish_threshold_report


class ReportResult(BaseModel):
    experiment_id: int
    frontier: list[dict]
    summary: str


@flow(name="report")
def report(experiment: str, db_path: str | None = None) -> ReportResult:
    """Publish the frontier, the threshold report and a summary of an experiment (id or name)."""
    with DuckDBStorage(db_path or default_db_path(), read_only=True) as storage:
        record = storage.get_experiment(experiment)
        frontier = publish_frontier(storage, record)
        publish_threshold_report(storage, record)
        summary = publish_summary(storage, record)
    return ReportResult(experiment_id=record.id, frontier=frontier, summary=summary)


def main(argv: list[str] | None = None) -> ReportResult:
    from flows.local_prefect import prefect_api

    parser = argparse.ArgumentParser(prog="python -m flows.report", description=report.__doc__)
    parser.add_argument("experiment", help="id or name of the experiment")
    parser.add_argument("--db", help=f"DuckDB file (default: $PARETUNE_DB or {default_db_path()})")
    args = parser.parse_args(argv)
    with prefect_api():
        result = report(args.experiment, args.db)
    print(result.summary)
    return result


if __name__ == "__main__":
    main()

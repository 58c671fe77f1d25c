"""`make demo-quick`: tune the built-in two-metric function end to end on this machine, offline.

A local Dask cluster of two workers, a Prefect API that lives as long as the demo (its runs
are kept under .paretune/prefect), and the embedded DuckDB file. An unfinished demo
experiment is resumed; a finished one is followed by a fresh experiment (`...-2`, `...-3`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from paretune.flows.local_prefect import prefect_api
from paretune.flows.tune import ExperimentSource, TuneOptions, TuneResult, tune
from paretune.optimizer import ExperimentSpec
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from paretune.storage import DuckDBStorage
from paretune.storage.report import frontier_points, frontier_table

PREFECT_HOME = Path(".paretune/prefect")


def demo_experiment(db_path: str, base: ExperimentSpec) -> int:
    """The unfinished experiment of this definition (a killed demo resumes), or a new one under
    the first free name: `NAME`, `NAME-2`, `NAME-3`..."""
    with DuckDBStorage(db_path) as storage:
        stored = {record.name: record for record in storage.list_experiments()}
        for number in range(1, len(stored) + 2):
            spec = base if number == 1 else base.model_copy(update={"name": f"{base.name}-{number}"})
            record = stored.get(spec.name)
            if record is None:
                return storage.create_experiment(spec).id
            if record.spec == spec and not storage.progress(record.id).done:
                return record.id
    raise AssertionError("unreachable: one of len(stored) + 1 names is free")


def frontier_console_table(db_path: str, experiment_id: int, note: str = "") -> Table:
    """The report model's frontier table (`storage.report.frontier_table`) for the terminal."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        record, points = frontier_points(storage, experiment_id)
    header, rows = frontier_table(record.spec, points)
    table = Table(title=f"Pareto frontier of {record.name} (experiment {experiment_id}){note}")
    for column in header:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def main(argv: list[str] | None = None) -> TuneResult:
    parser = argparse.ArgumentParser(prog="python -m paretune.flows.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="paretune.duckdb", help="DuckDB file (default: paretune.duckdb)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers (default: 2)")
    args = parser.parse_args(argv)
    console = Console()
    experiment_id = demo_experiment(args.db, ExperimentSpec.model_validate(SIZE_VS_ERROR_SPEC))
    with prefect_api(home=PREFECT_HOME):
        result = tune(ExperimentSource(experiment=str(experiment_id)), args.db,
                      TuneOptions(parallelism=args.workers, n_workers=args.workers))
    console.print(frontier_console_table(args.db, result.experiment_id))
    print_where(console, result, args.db, PREFECT_HOME)
    return result


def print_where(console: Console, result: TuneResult, db_path: str, prefect_home: Path, *extra: str) -> None:
    """Where a demo's results are: the database, any exported tables, the Prefect artifacts."""
    console.print("\n".join([
        f"{result.observations} observations ({result.completed} completed, {result.failed} failed) in "
        f"{Path(db_path).resolve()}",
        *extra,
        f"Prefect runs and report artifacts: PREFECT_HOME={prefect_home} prefect server start, then open "
        "http://127.0.0.1:4200",
        f"Query the results: paretune --db {db_path} frontier {result.experiment_id}",
    ]))


if __name__ == "__main__":
    main()

"""`make demo-quick`: tune the built-in two-metric function end to end on this machine, offline.

A local Dask cluster of two workers, a Prefect API that lives as long as the demo (its runs
are kept under .paretune/prefect), and the embedded DuckDB file. An unfinished demo
experiment is resumed; a finished one is followed by a fresh experiment (`...-2`, `...-3`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from paretune.flows.local_prefect import prefect_api
from paretune.flows.tune import ExperimentSource, TuneOptions, TuneResult, finished_tune
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


def wide_console() -> Console:
    """A console that keeps the frontier's numbers whole when the output is a file or a pipe
    (rich assumes 80 columns there and would cut them)."""
    console = Console()
    if not console.is_terminal:
        console.width = 140
    return console


def frontier_console_table(db_path: str, experiment_id: int, note: str = "") -> Table:
    """The report model's frontier table (`storage.report.frontier_table`) for the terminal:
    the optimized and constraint metrics and the assignments, numbers never cut (a cell folds
    before it loses a digit); stored metrics are left to `paretune frontier`, named in the caption."""
    with DuckDBStorage(db_path, read_only=True) as storage:
        record, points = frontier_points(storage, experiment_id)
    header, rows = frontier_table(record.spec, points)
    stored = [m.name for m in record.spec.metrics if m.strategy == "store"]
    shown = [i for i, column in enumerate(header) if column not in stored]
    caption = (f"stored metrics ({', '.join(stored)}): paretune frontier {experiment_id} --db {db_path}"
               if stored else None)
    table = Table(title=f"Pareto frontier of {record.name} (experiment {experiment_id}){note}", caption=caption)
    for i in shown:
        table.add_column(header[i], justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table


def main(argv: list[str] | None = None) -> TuneResult:
    parser = argparse.ArgumentParser(prog="python -m paretune.flows.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="paretune.duckdb", help="DuckDB file (default: paretune.duckdb)")
    parser.add_argument("--workers", type=int, default=2, help="local Dask workers (default: 2)")
    args = parser.parse_args(argv)
    console = wide_console()
    experiment_id = demo_experiment(args.db, ExperimentSpec.model_validate(SIZE_VS_ERROR_SPEC))
    with prefect_api(home=PREFECT_HOME):
        result = finished_tune(ExperimentSource(experiment=str(experiment_id)), args.db,
                               TuneOptions(parallelism=args.workers, n_workers=args.workers))
    console.print(frontier_console_table(args.db, result.experiment_id))
    print_where(console, result, args.db, PREFECT_HOME)
    return result


def command_prefix() -> str:
    """How to name this environment's commands so they run as printed: bare when its `bin` comes
    first on the PATH (an activated venv), else its path (`.venv/bin/` below this folder)."""
    bin_dir = Path(sys.executable).parent
    if shutil.which("paretune") == str(bin_dir / "paretune"):
        return ""
    try:
        return f"{bin_dir.relative_to(Path.cwd())}/"
    except ValueError:
        return f"{bin_dir}/"


def next_commands(db_path: str, experiment_id: int, prefect_home: Path, metrics: list[str]) -> list[tuple[str, str]]:
    """The three things to do after a demo, as commands that run as printed from this folder;
    `metrics` names the optimized metrics (the frontier's value_1 and value_2)."""
    bin_ = command_prefix()
    values = ", ".join(f"f.value_{k} AS {name}" if name.isidentifier() else f"f.value_{k}"
                       for k, name in enumerate(metrics, start=1))
    query = (f"SELECT t.trial, {values} FROM pareto_frontier f JOIN trial_numbers t USING (suggestion_id) "
             f"WHERE f.experiment_id = {experiment_id} ORDER BY f.value_1")
    return [
        (f"the dashboard, on http://127.0.0.1:8080/experiments/{experiment_id} (Ctrl-C stops it)",
         f"{bin_}paretune dashboard --db {db_path}"),
        ("the Prefect UI with the demo's flow runs and report artifacts, on http://127.0.0.1:4200",
         f"PREFECT_HOME={prefect_home} {bin_}prefect server start"),
        ("the frontier in SQL (any DuckDB client reads the published copy, paretune.connect opens it)",
         f"{bin_}python -c \"import paretune; paretune.connect('{db_path}').sql('{query}').show()\""),
    ]


def print_where(console: Console, result: TuneResult, db_path: str, prefect_home: Path, *extra: str) -> None:
    """Where a demo's results are (the database, any exported files), then what to run next."""
    lines = [
        f"{result.observations} observations ({result.completed} completed, {result.failed} failed) of "
        f"experiment {result.experiment_id} in {Path(db_path).resolve()}",
        *extra,
        "",
        "[bold]Next[/bold], from this folder:",
    ]
    with DuckDBStorage(db_path, read_only=True) as storage:
        metrics = [m.name for m in storage.get_experiment(result.experiment_id).spec.optimized_metrics]
    for what, command in next_commands(db_path, result.experiment_id, prefect_home, metrics):
        lines += [f"  # {what}", f"  {command}"]
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()

"""The `paretune` command line: experiments, suggestions and observations from a shell.

Exit codes: 0 success, 1 the request was refused (invalid spec, unknown experiment, bad
values), 2 the command line itself is wrong. Errors go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

from optimizer import ExperimentSpec, SpecError
from paretune.api import create_experiment, open_experiment
from paretune.dashboard.cli import register as register_dashboard_commands
from storage import DuckDBStorage, StorageError, default_db_path
from storage.artifacts import ArtifactStore
from storage.report import Point, experiment_summary, format_number, frontier_points


class UsageError(Exception):
    """A malformed argument that argparse could not catch (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except UsageError as error:
        parser.error(str(error))
    except (SpecError, StorageError, ValueError, FileNotFoundError) as error:
        print(f"paretune: error: {error}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paretune", description=__doc__.split("\n")[0])
    parser.add_argument("--db", default=None, help=f"DuckDB file (default: $PARETUNE_DB or {default_db_path()})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create an experiment from a YAML/JSON definition")
    create.add_argument("spec", help="path to the experiment definition (SigOpt-shaped YAML or JSON)")
    create.set_defaults(handler=_create)

    suggest = commands.add_parser("suggest", help="get new suggestions for an experiment (printed as JSON)")
    suggest.add_argument("experiment", help="experiment id or name")
    suggest.add_argument("--count", type=int, default=1, help="how many suggestions (default 1)")
    suggest.add_argument("--seed", type=int, default=None, help="seed for reproducible suggestions")
    suggest.set_defaults(handler=_suggest)

    observe = commands.add_parser("observe", help="report a suggestion's metric values, or its failure")
    observe.add_argument("suggestion", type=int, help="suggestion id (from `paretune suggest`)")
    observe.add_argument("--value", action="append", default=[], metavar="METRIC=NUMBER",
                         help="a metric value; repeat for each metric")
    observe.add_argument("--failed", action="store_true", help="the trial failed and produced no metrics")
    observe.add_argument("--reason", default=None, help="why it failed (with --failed), e.g. out_of_memory")
    observe.add_argument("--duration", type=float, default=None, help="trial duration in seconds")
    observe.set_defaults(handler=_observe)

    frontier = commands.add_parser("frontier", help="print the Pareto frontier of an experiment")
    frontier.add_argument("experiment", help="experiment id or name")
    frontier.add_argument("--format", choices=["table", "json"], default="table")
    frontier.set_defaults(handler=_frontier)

    export = commands.add_parser("export", help="write observations, frontier and threshold report as tables")
    export.add_argument("experiment", help="experiment id or name")
    export.add_argument("--to", required=True, metavar="URL",
                        help="a local folder or s3://bucket/prefix ($PARETUNE_S3_ENDPOINT_URL for other S3 APIs)")
    export.add_argument("--format", choices=["parquet", "csv", "json"], default="parquet")
    export.set_defaults(handler=_export)

    listing = commands.add_parser("list", help="list the experiments in the database with their progress")
    listing.set_defaults(handler=_list)
    register_dashboard_commands(lambda name, help_text: commands.add_parser(name, help=help_text))
    return parser


def _create(args: argparse.Namespace) -> None:
    experiment = create_experiment(args.spec, db=args.db)
    print(f"created experiment {experiment.id} ({experiment.name}) in {experiment.storage.path}")


def _suggest(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    experiment = open_experiment(args.experiment, db=args.db)
    for suggestion in experiment.suggest_batch(args.count, seed=args.seed):
        print(json.dumps({"suggestion": suggestion.id, "assignments": suggestion.assignments}))


def _observe(args: argparse.Namespace) -> None:
    values = dict(_parse_value(text) for text in args.value)
    if args.failed and values:
        raise UsageError("give either --value ... or --failed, not both")
    if not args.failed and not values:
        raise UsageError("give the metric values with --value METRIC=NUMBER (or --failed --reason WHY)")
    if args.reason and not args.failed:
        raise UsageError("--reason goes with --failed")
    storage = DuckDBStorage(args.db)
    experiment_id = storage.get_suggestion(args.suggestion).experiment_id
    experiment = open_experiment(experiment_id, storage=storage)
    observation = experiment.observe(
        args.suggestion, values=values or None, failed=args.failed, reason=args.reason, duration_s=args.duration
    )
    progress = experiment.progress()
    budget = "" if progress.budget is None else f" of {progress.budget}"
    print(f"observation {observation.id} recorded for suggestion {args.suggestion} "
          f"({progress.observations}{budget} observations)")


def _parse_value(text: str) -> tuple[str, float]:
    name, sep, number = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--value {text!r}: write it as METRIC=NUMBER, e.g. --value f1=0.83")
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"--value {text!r}: {number!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"--value {text!r}: values must be finite; use --failed for a diverged trial")
    return name, value


def _frontier(args: argparse.Namespace) -> None:
    storage = open_experiment(args.experiment, db=args.db).storage
    record, points = frontier_points(storage, args.experiment)
    if args.format == "json":
        print(json.dumps([frontier_json(record.spec, point) for point in points], default=str, indent=2))
        return
    summary = experiment_summary(storage, record)
    print(f"experiment {record.id} ({record.name}): {len(points)} frontier point(s), "
          f"{summary.observations} observation(s), {summary.failed} failed")
    if points:
        metrics = [m.name for m in record.spec.metrics if m.strategy != "store"]
        header = ["suggestion", *metrics, "assignments"]
        body = [[point.suggestion_id, *(point.values.get(name) for name in metrics),
                 ", ".join(f"{k}={format_number(v)}" for k, v in point.assignments.items())] for point in points]
        print(format_table(header, body))


def frontier_json(spec: ExperimentSpec, point: Point) -> dict[str, Any]:
    """A frontier point as `frontier --format json` prints it (raw numbers, the spec's metric order)."""
    optimized = [m.name for m in spec.optimized_metrics]
    return {
        "observation_id": point.observation_id, "suggestion_id": point.suggestion_id, "run_id": point.run_id,
        "metric_1": optimized[0], "value_1": point.values.get(optimized[0]),
        "metric_2": optimized[1] if len(optimized) > 1 else None,
        "value_2": point.values.get(optimized[1]) if len(optimized) > 1 else None,
        "values": {m.name: point.values[m.name] for m in spec.metrics if m.name in point.values},
        "assignments": point.assignments,
    }


def _export(args: argparse.Namespace) -> None:
    storage = DuckDBStorage(args.db)
    experiment = storage.get_experiment(args.experiment)
    for url in storage.export_experiment(experiment.id, ArtifactStore(args.to), args.format):
        print(url)


def _list(args: argparse.Namespace) -> None:
    storage = DuckDBStorage(args.db)
    rows = []
    for record in storage.list_experiments():
        progress = storage.progress(record.id)
        budget = "-" if progress.budget is None else progress.budget
        rows.append([record.id, record.name, record.state, f"{progress.observations}/{budget}", progress.failed,
                     progress.open_suggestions, record.created_at.strftime("%Y-%m-%d %H:%M")])
    if not rows:
        print(f"no experiments in {storage.path}")
        return
    print(format_table(["id", "name", "state", "observations", "failed", "open", "created"], rows))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table (pipes and shells handle it better than box drawing)."""
    cells = [[_cell(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return format_number(value)


if __name__ == "__main__":
    sys.exit(main())

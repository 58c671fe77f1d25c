"""The `paretune` command line: experiments, suggestions and observations from a shell.

`paretune tune` and `paretune preprocess` hand their arguments to the flows' own parsers
(`paretune.flows.tune`, `paretune.flows.preprocess`), so each option is defined once; they load
Prefect and Dask only when they run.

Exit codes: 0 success, 1 the request was refused (invalid spec, unknown experiment, bad values),
2 the command line itself is wrong. Errors go to stderr, one line each, never a traceback.
Read commands (`list`, `frontier`, `export`) open the store read-only: they work while a sweep
writes, and never create or change a file. A refused command writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

from paretune.optimizer import SpecError
from paretune.api import create_experiment, load_spec, open_experiment
from paretune.dashboard.cli import register as register_dashboard_commands
from paretune.manage_cli import register as register_manage_commands
from paretune.server.cli import register as register_server_commands
from paretune.lifecycle import MAX_BATCH
from paretune.storage import DuckDBStorage, StorageError, default_db_path
from paretune.storage.artifacts import ArtifactStore
from paretune.storage.report import experiment_summary, format_number, frontier_points, frontier_table, point_record


class UsageError(Exception):
    """A malformed argument that argparse could not catch (exit code 2)."""


# Commands whose parser is a flow's own: name -> (module, one-line help, whether it takes --db).
FLOW_COMMANDS = {
    "tune": ("paretune.flows.tune", "tune an experiment with Prefect and Dask until its budget is spent", True),
    "preprocess": ("paretune.flows.preprocess", "tokenize SQuAD 2.0 and compute teacher logits once, before trials",
                   False),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if (flow_command := _flow_command(argv)) is not None:
        return flow_command
    parser = _parser()
    args = parser.parse_args(argv)
    args.db = getattr(args, "db", None) or default_db_path()
    try:
        args.handler(args)
    except UsageError as error:
        parser.error(str(error))
    except (SpecError, StorageError, OSError) as error:
        print(f"paretune: error: {_message(error)}", file=sys.stderr)
        return 1
    return 0


def _flow_command(argv: list[str]) -> int | None:
    """Run `paretune tune ...`/`paretune preprocess ...` through the flow's own parser; None when
    the command is another one. `--db PATH` may come before the command, as everywhere."""
    db: list[str] = []
    position = 0
    while position < len(argv) and argv[position].startswith("--db"):
        db, position = ([argv[position]], position + 1) if "=" in argv[position] else (argv[position:position + 2],
                                                                                       position + 2)
    if position >= len(argv) or argv[position] not in FLOW_COMMANDS:
        return None
    name = argv[position]
    module_name, _, takes_db = FLOW_COMMANDS[name]
    if db and not takes_db:
        print(f"paretune {name}: error: --db does not apply to {name}", file=sys.stderr)
        return 2
    import importlib

    result = importlib.import_module(module_name).main([*argv[position + 1:], *db], prog=f"paretune {name}")
    return result if isinstance(result, int) else 0


def _parser() -> argparse.ArgumentParser:
    # --db is accepted before or after the command: the shared parent puts it on every subcommand.
    db_option = argparse.ArgumentParser(add_help=False)
    db_option.add_argument("--db", default=argparse.SUPPRESS, metavar="PATH",
                           help=f"DuckDB file (default: $PARETUNE_DB or {default_db_path()})")
    parser = argparse.ArgumentParser(prog="paretune", description=__doc__.split("\n")[0], parents=[db_option])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[db_option])

    create = command("create", "create an experiment from a YAML/JSON definition")
    create.add_argument("spec", help="path to the experiment definition (SigOpt-shaped YAML or JSON)")
    create.add_argument("--allow-duplicate-name", action="store_true",
                        help="create it even if an experiment of the same name exists")
    create.set_defaults(handler=_create)

    suggest = command("suggest", "get new suggestions for an experiment (printed as JSON lines)")
    suggest.add_argument("experiment", help="experiment id or name")
    suggest.add_argument("--count", type=_count, default=1,
                         help="how many suggestions (default 1; at most what the budget has left)")
    suggest.add_argument("--seed", type=int, default=None,
                         help="seed for reproducible suggestions (default: derived from the experiment)")
    suggest.set_defaults(handler=_suggest)

    observe = command("observe", "report a suggestion's metric values, or its failure")
    observe.add_argument("suggestion", type=_suggestion_id, help="suggestion id (from `paretune suggest`)")
    observe.add_argument("--value", action="append", default=[], metavar="METRIC=NUMBER[±STDDEV]",
                         help="a metric value, with its measured standard deviation after ± or +- if you have one; "
                              "repeat once for each metric")
    observe.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                         help="kept with the observation (numbers and true/false read as such); repeat for each")
    observe.add_argument("--failed", action="store_true", help="the trial failed and produced no metrics")
    observe.add_argument("--reason", default=None, help="why it failed (with --failed), e.g. out_of_memory")
    observe.add_argument("--duration", type=float, default=None, help="trial duration in seconds")
    observe.set_defaults(handler=_observe)

    frontier = command("frontier", "print the Pareto frontier of an experiment")
    frontier.add_argument("experiment", help="experiment id or name")
    frontier.add_argument("--format", choices=["table", "json"], default="table")
    frontier.set_defaults(handler=_frontier)

    export = command("export", "write observations, frontier and threshold report as tables")
    export.add_argument("experiment", help="experiment id or name")
    export.add_argument("--to", required=True, metavar="URL",
                        help="a local folder or s3://bucket/prefix ($PARETUNE_S3_ENDPOINT_URL for other S3 APIs)")
    export.add_argument("--format", choices=["parquet", "csv", "json"], default="parquet")
    export.set_defaults(handler=_export)

    listing = command("list", "list the experiments in the database with their progress")
    listing.add_argument("--all", action="store_true", help="include archived experiments")
    listing.set_defaults(handler=_list)
    register_dashboard_commands(command)
    register_manage_commands(command)
    register_server_commands(command)
    for name, (_, help_text, _) in FLOW_COMMANDS.items():  # listed for --help; _flow_command runs them
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"--count must be between 1 and {MAX_BATCH}, got {value}")
    return value


def _suggestion_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a suggestion id (a whole number from `paretune suggest`)")
    return int(text)


def _create(args: argparse.Namespace) -> None:
    spec = load_spec(args.spec)  # validated before any file is touched
    experiment = create_experiment(spec, db=args.db, allow_duplicate_name=args.allow_duplicate_name)
    print(f"created experiment {experiment.id} ({experiment.name}) in {experiment.storage.path}")


def _suggest(args: argparse.Namespace) -> None:
    experiment = open_experiment(args.experiment, db=args.db, seed=args.seed)
    for suggestion in experiment.suggest_batch(args.count):
        task = {"task": suggestion.task} if suggestion.task is not None else {}
        print(json.dumps({"suggestion": suggestion.id, "assignments": suggestion.assignments} | task))


def _observe(args: argparse.Namespace) -> None:
    values, stddevs = _parse_values(args.value)
    metadata = _parse_metadata(args.metadata)
    if args.failed and values:
        raise UsageError("give either --value ... or --failed, not both")
    if not args.failed and not values:
        raise UsageError("give the metric values with --value METRIC=NUMBER (or --failed --reason WHY)")
    if args.reason and not args.failed:
        raise UsageError("--reason goes with --failed")
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration >= 0):
        raise UsageError(f"--duration must be a finite number of seconds >= 0, got {args.duration}")
    storage = DuckDBStorage(args.db)
    experiment = open_experiment(storage.get_suggestion(args.suggestion).experiment_id, storage=storage)
    observation = experiment.observe(args.suggestion, values=values or None, failed=args.failed, reason=args.reason,
                                     duration_s=args.duration, value_stddevs=stddevs or None, metadata=metadata or None)
    progress = experiment.progress()
    budget = "" if progress.budget is None else f" of {progress.budget}"
    print(f"observation {observation.id} recorded for suggestion {args.suggestion} "
          f"({progress.observations}{budget} observations)")


def key_value_pairs(option: str, texts: list[str], form: str, example: str) -> list[tuple[str, str, str]]:
    """Each `--option KEY=VALUE` as (text, key, value); a malformed or repeated key is refused."""
    pairs, seen = [], set()
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {text!r}: write it as {form}, e.g. {option} {example}")
        if key in seen:
            raise UsageError(f"{option} {key} is given twice; give each once")
        seen.add(key)
        pairs.append((text, key, value))
    return pairs


def _parse_values(texts: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """`METRIC=NUMBER` or `METRIC=NUMBER±STDDEV` (also `+-`): values and standard deviations."""
    values: dict[str, float] = {}
    stddevs: dict[str, float] = {}
    for text, name, numbers in key_value_pairs("--value", texts, "METRIC=NUMBER", "f1=0.83 (or f1=0.83±0.01)"):
        number, _, spread = numbers.replace("+-", "±").partition("±")
        values[name] = finite_number("--value", text, number, "values must be finite; use --failed for a diverged trial")
        if spread:
            stddevs[name] = finite_number("--value", text, spread, "a standard deviation must be finite")
            if stddevs[name] < 0:
                raise UsageError(f"--value {text!r}: the standard deviation {spread} is negative; it is >= 0")
    return values, stddevs


def finite_number(option: str, text: str, number: str, advice: str, *, alternative: str = "") -> float:
    """`number` (the part of the option's `text` after `=`) as a finite float, or a UsageError
    naming the option and its text; `advice` says what to give instead of an infinity."""
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"{option} {text!r}: {number!r} is not a number{alternative}") from None
    if not math.isfinite(value):
        raise UsageError(f"{option} {text!r}: {advice}")
    return value


def _parse_metadata(texts: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for _, key, value in key_value_pairs("--metadata", texts, "KEY=VALUE", "gpu=A100"):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        metadata[key] = parsed if isinstance(parsed, (int, float, bool)) and math.isfinite(float(parsed)) else value
    return metadata


def _frontier(args: argparse.Namespace) -> None:
    with DuckDBStorage(args.db, read_only=True) as storage:
        record, points = frontier_points(storage, args.experiment)
        summary = experiment_summary(storage, record)
    if args.format == "json":
        print(json.dumps([point_record(record.spec, point) for point in points], default=str, indent=2))
        return
    print(f"experiment {record.id} ({record.name}): {len(points)} frontier point(s), "
          f"{summary.observations} observation(s), {summary.failed} failed")
    if points:
        print(format_table(*frontier_table(record.spec, points)))


def _export(args: argparse.Namespace) -> None:
    with DuckDBStorage(args.db, read_only=True) as storage:
        experiment = storage.get_experiment(args.experiment)
        for url in storage.export_experiment(experiment.id, ArtifactStore(args.to), args.format):
            print(url)


def _list(args: argparse.Namespace) -> None:
    with DuckDBStorage(args.db, read_only=True) as storage:
        rows = []
        for record in storage.list_experiments():
            if record.state == "archived" and not args.all:
                continue
            progress = storage.progress(record.id)
            budget = "-" if progress.budget is None else progress.budget
            spent = progress.observations if progress.spent == progress.observations else format_number(progress.spent)
            rows.append([record.id, record.name, record.project or "", record.state, f"{spent}/{budget}",
                         progress.failed, progress.open_suggestions, record.created_at.strftime("%Y-%m-%d %H:%M")])
    if not rows:
        print(f"no experiments in {storage.path}")
        return
    print(format_table(["id", "name", "project", "state", "budget used", "failed", "open", "created"], rows))


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table (pipes and shells handle it better than box drawing)."""
    cells = [[_cell(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = format_number(value)
    return text if text.isprintable() else repr(text)  # a name from an old store must not drive the terminal


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


if __name__ == "__main__":
    sys.exit(main())

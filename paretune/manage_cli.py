"""`paretune update`, `archive`, `unarchive` and `delete`: registered on the main CLI by `register(command)`.

Each is a thin front over `paretune.api` (`Experiment.update`, `.archive`, `delete_experiment`),
which holds the checks; a refusal is the API's message, exit code 1, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from paretune.api import delete_experiment, open_experiment
from paretune.storage import DuckDBStorage


def register(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    update = command("update", "change an experiment mid-way: budget, thresholds, parallel bandwidth, name, metadata")
    update.add_argument("experiment", help="experiment id or name")
    update.add_argument("--budget", type=int, default=None, metavar="N",
                        help="the observation budget in force (not below what was already observed)")
    update.add_argument("--threshold", action="append", default=[], metavar="METRIC=NUMBER",
                        help="a metric's new threshold (METRIC=none removes it); repeat for each metric")
    update.add_argument("--parallel-bandwidth", type=int, default=None, metavar="K",
                        help="how many trials may run at once")
    update.add_argument("--name", default=None, help="a new name")
    update.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="set one metadata entry (numbers and true/false read as such); repeat for each")
    update.set_defaults(handler=_update)

    archive = command("archive", "archive an experiment: hidden from `list` (unless --all), no more suggestions, "
                                 "data kept")
    archive.add_argument("experiment", help="experiment id or name")
    archive.set_defaults(handler=_archive)

    unarchive = command("unarchive", "undo `archive`: the experiment is listed and suggests again")
    unarchive.add_argument("experiment", help="experiment id or name")
    unarchive.set_defaults(handler=_unarchive)

    delete = command("delete", "delete an experiment and everything recorded for it (asks first unless --yes)")
    delete.add_argument("experiment", help="experiment id or name")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(handler=_delete)


def _update(args: argparse.Namespace) -> None:
    from paretune.cli import UsageError, _parse_metadata

    thresholds = _parse_thresholds(args.threshold)
    changes = (args.budget, args.parallel_bandwidth, args.name)
    if all(value is None for value in changes) and not thresholds and not args.metadata:
        raise UsageError("give at least one change: --budget, --threshold, --parallel-bandwidth, --name or --metadata")
    experiment = open_experiment(args.experiment, db=args.db)
    metadata = (experiment.spec.metadata or {}) | _parse_metadata(args.metadata) if args.metadata else None
    experiment.update(name=args.name, budget=args.budget, parallel_bandwidth=args.parallel_bandwidth,
                      thresholds=thresholds or None, metadata=metadata)
    record = experiment.storage.get_experiment(experiment.id)
    shown = ", ".join(f"{m.name}>={m.threshold:g}" if m.objective == "maximize" else f"{m.name}<={m.threshold:g}"
                      for m in record.spec.metrics if m.threshold is not None) or "none"
    print(f"updated experiment {record.id} ({record.name}): budget {record.budget}, parallel bandwidth "
          f"{record.spec.parallel_bandwidth}, thresholds {shown}")


def _parse_thresholds(texts: list[str]) -> dict[str, float | None]:
    from paretune.cli import finite_number, key_value_pairs

    return {name: None if number.lower() == "none" else
            finite_number("--threshold", text, number, "a threshold is a finite number", alternative=" (or `none`)")
            for text, name, number in key_value_pairs("--threshold", texts, "METRIC=NUMBER", "exact=60")}


def _archive(args: argparse.Namespace) -> None:
    experiment = open_experiment(args.experiment, db=args.db)
    experiment.archive()
    print(f"archived experiment {experiment.id} ({experiment.name}); `paretune list --all` still shows it")


def _unarchive(args: argparse.Namespace) -> None:
    experiment = open_experiment(args.experiment, db=args.db)
    experiment.unarchive()
    print(f"experiment {experiment.id} ({experiment.name}) is {experiment.storage.get_experiment(experiment.id).state}")


def _delete(args: argparse.Namespace) -> None:
    storage = DuckDBStorage(args.db)
    record = storage.get_experiment(args.experiment)
    progress = storage.progress(record.id)
    if not args.yes:
        print(f"delete experiment {record.id} ({record.name}) with its {progress.observations} observation(s) and "
              f"{progress.open_suggestions} open suggestion(s)? This cannot be undone. [y/N] ", end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("not deleted")
            raise SystemExit(1)
    delete_experiment(record.id, storage=storage)
    print(f"deleted experiment {record.id} ({record.name})")

"""`paretune dashboard` and `paretune report`: registered on the main CLI by `register(command)`.

Heavy imports (Starlette, uvicorn, scikit-learn) wait until a command runs, so the rest of the
CLI starts as fast as before.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Callable

from paretune.storage import default_db_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def register(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Add `dashboard` and `report` through the main CLI's `command(name, help)` parser factory."""
    dashboard = command("dashboard", "serve the web dashboard of the database (read-only; loopback unless --host says otherwise)")
    dashboard.add_argument("--host", default=DEFAULT_HOST,
                           help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 for every interface)")
    dashboard.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    dashboard.add_argument("--refresh", type=float, default=3.0, metavar="SECONDS",
                           help="how often an open experiment page checks for new observations (default 3)")
    dashboard.set_defaults(handler=_dashboard)

    report = command("report", "publish an experiment's report as Prefect artifacts (the report flow), "
                               "or with --html write its dashboard page as one self-contained HTML file")
    report.add_argument("experiment", help="experiment id or name")
    report.add_argument("--html", metavar="PATH_OR_URL",
                        help="write the page there: a local path or s3://bucket/key.html "
                             "($PARETUNE_S3_ENDPOINT_URL for other S3 APIs); no Prefect needed")
    report.add_argument("--artifacts", action="store_true",
                        help="with --html, also publish the Prefect artifacts (without --html they always are)")
    report.set_defaults(handler=_report)


def _dashboard(args: argparse.Namespace) -> None:
    from paretune.cli import UsageError

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: give a port between 1 and 65535")
    if args.refresh <= 0:
        raise UsageError("--refresh must be a positive number of seconds")
    db = args.db or default_db_path()
    from paretune.storage import DuckDBStorage

    with DuckDBStorage(db, read_only=True) as storage:  # refuse a missing or unreadable file before serving anything
        storage.list_experiments()
    import uvicorn

    from paretune.dashboard.app import create_app

    config = uvicorn.Config(create_app(db, refresh_s=args.refresh), host=args.host, port=args.port,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if not _is_loopback(args.host):
        print(f"paretune: warning: serving on {args.host}, reachable from other machines; the dashboard has no login",
              file=sys.stderr)
    print(f"paretune dashboard of {db}: http://{_url_host(args.host)}:{args.port}/ (Ctrl-C stops it)", flush=True)
    server.run()


def _report(args: argparse.Namespace) -> None:
    db = args.db or default_db_path()
    if args.html and not args.artifacts:
        from paretune.dashboard.static_report import write_static_report

        print(write_static_report(db, args.experiment, args.html))
        return
    from paretune.flows.report import main as report_flow

    report_flow([args.experiment, "--db", db, *(["--html", args.html] if args.html else [])], prog="paretune report")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


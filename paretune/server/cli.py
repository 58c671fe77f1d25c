"""`paretune serve` and `paretune token`: registered on the main CLI by `register(command)`.

Starlette and uvicorn are imported only when `serve` runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from paretune.dashboard.cli import DEFAULT_HOST, _is_loopback, _url_host
from paretune.storage import DuckDBStorage
from paretune.storage import api_records

DEFAULT_PORT = 8500


def register(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    serve = command("serve", "serve SigOpt's REST API under /v1 and the dashboard at / (until SIGTERM or Ctrl-C)")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to bind (default {DEFAULT_HOST}: this machine only; 0.0.0.0 for every "
                            "interface, which makes the dashboard ask for a token too)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    serve.set_defaults(handler=_serve)

    token = command("token", "API tokens for `paretune serve`: create, list, revoke")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print it (once; only its hash is kept)")
    create.add_argument("name", help="who or what uses it, e.g. training-cluster")
    create.add_argument("--read-only", action="store_true", help="it may read but not create or change anything")
    create.set_defaults(handler=_token_create)
    listing = actions.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.set_defaults(handler=_token_list)
    revoke = actions.add_parser("revoke", help="revoke a token by id or name; a running server refuses it within a second")
    revoke.add_argument("token", help="token id or name (from `paretune token list`)")
    revoke.set_defaults(handler=_token_revoke)


def _serve(args: argparse.Namespace) -> None:
    from paretune.cli import UsageError

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: give a port between 1 and 65535")
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise UsageError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    with DuckDBStorage(args.db) as storage:  # refuses a foreign or unwritable file; migrates an older one
        if not storage.files.path.exists():
            raise UsageError(f"no database at {storage.files.path}: create it with its first token, "
                             f"`paretune --db {args.db} token create NAME`")
        if not api_records.list_tokens(storage):
            print("paretune: warning: no API token yet; every request will be refused until you run "
                  f"`paretune --db {args.db} token create NAME`", file=sys.stderr)
    import uvicorn

    from paretune.server.app import create_app

    loopback = _is_loopback(args.host)
    app = create_app(args.db, protect_dashboard=not loopback)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    if not loopback:
        print(f"paretune: warning: serving on {args.host}, reachable from other machines; every request needs a "
              "token" + ("" if args.ssl_certfile else ", sent in clear text without --ssl-certfile or a TLS proxy"),
              file=sys.stderr)
    scheme = "https" if args.ssl_certfile else "http"
    print(f"paretune server of {args.db}: SIGOPT_API_URL={scheme}://{_url_host(args.host)}:{args.port} "
          "(SIGTERM or Ctrl-C stops it)", flush=True)
    uvicorn.Server(config).run()


def _token_create(args: argparse.Namespace) -> None:
    storage = DuckDBStorage(args.db)
    record, token = api_records.create_token(storage, args.name, read_only=args.read_only)
    kind = "read-only token" if record.read_only else "token"
    print(f"created {kind} {record.id} ({record.name}); it is shown once, keep it secret:")
    print(token)


def _token_list(args: argparse.Namespace) -> None:
    from paretune.cli import format_table

    with DuckDBStorage(args.db, read_only=True) as storage:
        tokens = api_records.list_tokens(storage)
    if not tokens:
        print(f"no tokens in {args.db}")
        return
    rows = [[t.id, t.name, "read-only" if t.read_only else "read-write", f"{t.created_at:%Y-%m-%d %H:%M}",
             "revoked" if t.revoked_at else "live"] for t in tokens]
    print(format_table(["id", "name", "access", "created", "state"], rows))


def _token_revoke(args: argparse.Namespace) -> None:
    token = api_records.revoke_token(DuckDBStorage(args.db), args.token)
    print(f"revoked token {token.id} ({token.name})")

"""The team server's ASGI app: SigOpt's API under /v1, the dashboard at /, and /health.

Every /v1 request needs a token, sent as SigOpt's client sends it: the HTTP basic-auth user
name. None or an unknown (or revoked) one is 401, a read-only token asking for anything but a
read is 403. The dashboard needs one too when the server listens beyond loopback (a browser asks
for it with its basic-auth prompt: the token as user name, no password). Tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from functools import partial
from typing import Any, AsyncIterator

import pydantic
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from paretune.lifecycle import MetricsRefused
from paretune.optimizer import SpecError
from paretune.server.protocol import ApiError, error_body, translate
from paretune.storage import StorageError
from paretune.server.runs import Api
from paretune.server.service import StoreService

log = logging.getLogger("paretune.server")
READ_METHODS = ("GET", "HEAD")


def v1_routes(api: Api) -> list[Route]:
    """SigOpt's paths, each with its handler per method (an AI experiment's the same as an
    experiment's, with `ai=True` where the answer's shape differs)."""
    experiment, ai = "/experiments/{experiment}", "/aiexperiments/{experiment}"
    project = "/clients/{client}/projects/{project}"
    as_ai = {name: partial(getattr(api, name), ai=True) for name in ("create_experiment", "list_experiments",
                                                                       "fetch_experiment", "update_experiment")}
    experiment_runs = {"training_runs": {"POST": api.create_experiment_run},
                       "best_training_runs": {"GET": api.best_runs}}
    table: dict[str, dict[str, Any]] = {
        "/tokens/self": {"GET": api.token_self},
        "/clients/{client}": {"GET": api.fetch_client},
        "/clients/{client}/projects": {"POST": api.create_project, "GET": api.list_projects},
        project: {"GET": api.fetch_project},
        f"{project}/training_runs": {"POST": api.create_baseline_run, "GET": api.list_project_runs},
        f"{project}/aiexperiments": {"POST": as_ai["create_experiment"], "GET": as_ai["list_experiments"]},
        f"{project}/experiments": {"GET": api.list_experiments},
        "/clients/{client}/experiments": {"POST": api.create_experiment, "GET": api.list_experiments},
        "/experiments": {"POST": api.create_experiment, "GET": api.list_experiments},
        experiment: {"GET": api.fetch_experiment, "PUT": api.update_experiment, "DELETE": api.archive_experiment},
        ai: {"GET": as_ai["fetch_experiment"], "PUT": as_ai["update_experiment"], "DELETE": api.archive_experiment},
        **{f"{base}/{name}": methods for base in (experiment, ai) for name, methods in experiment_runs.items()},
        f"{experiment}/suggestions": {"POST": api.create_suggestion, "GET": api.list_suggestions,
                                      "DELETE": api.delete_suggestions},
        f"{experiment}/suggestions/{{suggestion}}": {"GET": api.fetch_suggestion, "PUT": api.update_suggestion,
                                                     "DELETE": api.delete_suggestions},
        f"{experiment}/queued_suggestions": {"POST": api.queue_suggestion, "GET": api.list_queued},
        f"{experiment}/queued_suggestions/{{queued}}": {"GET": api.fetch_queued, "DELETE": api.delete_queued},
        f"{experiment}/observations": {"POST": api.create_observation, "GET": api.list_observations,
                                       "DELETE": api.delete_observations},
        f"{experiment}/observations/batch": {"POST": api.create_observations},
        f"{experiment}/observations/{{observation}}": {"GET": api.fetch_observation, "PUT": api.update_observation,
                                                       "DELETE": api.delete_observations},
        f"{experiment}/best_assignments": {"GET": api.best_assignments},
        f"{experiment}/importances": {"GET": partial(api.importances, per_metric=False)},
        f"{experiment}/metric_importances": {"GET": partial(api.importances, per_metric=True)},
        f"{experiment}/stopping_criteria": {"GET": api.stopping_criteria},
        "/training_runs/{run}": {"GET": api.fetch_run, "PUT": api.update_run, "MERGE": api.update_run},
        "/training_runs/{run}/checkpoints": {"POST": api.create_checkpoint, "GET": api.list_checkpoints},
        "/training_runs/{run}/checkpoints/{checkpoint}": {"GET": api.fetch_checkpoint},
    }
    return [Route(path, endpoint, methods=[method]) for path, methods in table.items()
            for method, endpoint in methods.items()]


async def api_error(request: Request, error: Exception) -> Response:
    refused = translate(error)
    if isinstance(error, HTTPException):
        refused = ApiError(error.status_code, f"{request.method} {request.url.path}: {error.detail}")
    elif isinstance(error, pydantic.ValidationError):
        refused = ApiError(400, f"invalid definition: {error.error_count()} problem(s): "
                                f"{'; '.join(e['msg'] for e in error.errors(include_url=False))[:500]}")
    if refused is None:
        log.error("unexpected %s answering %s %s", type(error).__name__, request.method, request.url.path)
        refused = ApiError(500, "internal error on the paretune server; its log has the details")
    return JSONResponse(error_body(refused.status, refused.message), status_code=refused.status)


class TokenGate:
    """ASGI middleware: the token check before any route (see the module's docstring)."""

    def __init__(self, app: ASGIApp, service: StoreService, protect_dashboard: bool):
        self.app = app
        self.service = service
        self.protect_dashboard = protect_dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        api = scope["path"] == "/v1" or scope["path"].startswith("/v1/")
        if not api and not self.protect_dashboard:
            return await self.app(scope, receive, send)
        presented = _basic_user(scope)
        token = await run_in_threadpool(self.service.token, presented) if presented else None
        if token is None:
            why = "no API token given" if not presented else "unknown or revoked API token"
            message = f"{why}: send it as the basic-auth user name (SigOpt's client does, from SIGOPT_API_TOKEN)"
            headers = {} if api else {"WWW-Authenticate": 'Basic realm="paretune"'}
            return await JSONResponse(error_body(401, message), 401, headers=headers)(scope, receive, send)
        if api and token.read_only and scope["method"] not in READ_METHODS:
            message = f"token {token.name!r} is read-only: it cannot {scope['method']} {scope['path']}"
            return await JSONResponse(error_body(403, message), 403)(scope, receive, send)
        scope["paretune.token"] = token
        await self.app(scope, receive, send)


def _basic_user(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, encoded = value.decode("latin-1").partition(" ")
            if scheme.lower() != "basic":
                return None
            try:
                user = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return None
            return user or None
    return None


def create_app(db_path: str, *, protect_dashboard: bool) -> Starlette:
    from paretune.dashboard.app import create_app as create_dashboard

    service = StoreService(db_path)
    api = Api(service)
    # Refusals are answered by the exception middleware; anything else is a 500 (and logged, by uvicorn).
    refusals = (ApiError, StorageError, SpecError, MetricsRefused, pydantic.ValidationError, HTTPException, Exception)
    handlers: dict[Any, Any] = {kind: api_error for kind in refusals}
    v1 = Starlette(routes=v1_routes(api), exception_handlers=handlers)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    app = Starlette(routes=[Route("/health", health, methods=["GET"]), Mount("/v1", app=v1),
                            Mount("/", app=create_dashboard(db_path))], lifespan=lifespan)
    return TokenGate(app, service, protect_dashboard)  # type: ignore[return-value]

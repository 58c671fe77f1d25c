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
    experiment, ai = "/experiments/{experiment}", "/aiexperiments/{experiment}"
    project = "/clients/{client}/projects/{project}"

    def route(path: str, endpoint: Any, method: str, **options: Any) -> Route:
        return Route(path, partial(endpoint, **options) if options else endpoint, methods=[method])
    return [
        route("/tokens/self", api.token_self, "GET"),
        route("/clients/{client}", api.fetch_client, "GET"),
        route("/clients/{client}/projects", api.create_project, "POST"),
        route("/clients/{client}/projects", api.list_projects, "GET"),
        route(project, api.fetch_project, "GET"),
        route(f"{project}/training_runs", api.create_baseline_run, "POST"),
        route(f"{project}/training_runs", api.list_project_runs, "GET"),
        route(f"{project}/aiexperiments", api.create_experiment, "POST", ai=True),
        route(f"{project}/aiexperiments", api.list_experiments, "GET", ai=True),
        route(f"{project}/experiments", api.list_experiments, "GET"),
        route("/clients/{client}/experiments", api.create_experiment, "POST"),
        route("/clients/{client}/experiments", api.list_experiments, "GET"),
        route("/experiments", api.create_experiment, "POST"),
        route("/experiments", api.list_experiments, "GET"),
        *[r for base, flag in ((experiment, False), (ai, True)) for r in (
            route(base, api.fetch_experiment, "GET", ai=flag),
            route(base, api.update_experiment, "PUT", ai=flag),
            route(base, api.archive_experiment, "DELETE"),
            route(f"{base}/training_runs", api.create_experiment_run, "POST"),
            route(f"{base}/best_training_runs", api.best_runs, "GET"),
        )],
        route(f"{experiment}/suggestions", api.create_suggestion, "POST"),
        route(f"{experiment}/suggestions", api.list_suggestions, "GET"),
        route(f"{experiment}/suggestions", api.delete_suggestions, "DELETE"),
        route(f"{experiment}/suggestions/{{suggestion}}", api.fetch_suggestion, "GET"),
        route(f"{experiment}/suggestions/{{suggestion}}", api.update_suggestion, "PUT"),
        route(f"{experiment}/suggestions/{{suggestion}}", api.delete_suggestions, "DELETE"),
        route(f"{experiment}/queued_suggestions", api.queue_suggestion, "POST"),
        route(f"{experiment}/queued_suggestions", api.list_queued, "GET"),
        route(f"{experiment}/queued_suggestions/{{queued}}", api.fetch_queued, "GET"),
        route(f"{experiment}/queued_suggestions/{{queued}}", api.delete_queued, "DELETE"),
        route(f"{experiment}/observations", api.create_observation, "POST"),
        route(f"{experiment}/observations", api.list_observations, "GET"),
        route(f"{experiment}/observations/batch", api.create_observations, "POST"),
        route(f"{experiment}/observations/{{observation}}", api.fetch_observation, "GET"),
        route(f"{experiment}/observations/{{observation}}", api.change_observation, "PUT"),
        route(f"{experiment}/observations/{{observation}}", api.change_observation, "DELETE"),
        route(f"{experiment}/best_assignments", api.best_assignments, "GET"),
        route(f"{experiment}/importances", api.importances, "GET", per_metric=False),
        route(f"{experiment}/metric_importances", api.importances, "GET", per_metric=True),
        route(f"{experiment}/stopping_criteria", api.stopping_criteria, "GET"),
        route("/training_runs/{run}", api.fetch_run, "GET"),
        route("/training_runs/{run}", api.update_run, "PUT"),
        route("/training_runs/{run}", api.update_run, "MERGE"),
        route("/training_runs/{run}/checkpoints", api.create_checkpoint, "POST"),
        route("/training_runs/{run}/checkpoints", api.list_checkpoints, "GET"),
    ]


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

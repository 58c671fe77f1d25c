"""The dashboard: a read-only Starlette app over one DuckDB file.

Every request opens the store read-only (`DuckDBStorage(path, read_only=True)`) and closes it
before answering, so the app holds nothing between requests and keeps working while a sweep
writes. Pages are HTML shells; the experiment page draws from `/api/experiments/{id}` (the
report model as columns) and polls `/api/experiments/{id}/version` to refresh when the
experiment changes. Anything but GET and HEAD is refused with 405; an unknown experiment or
run is a 404 page, a malformed id a 400 page, and no error ever shows a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterator

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from paretune.dashboard.payload import experiment_payload, importance_payload, run_payload, summary_payload
from paretune.importance import MIN_OBSERVATIONS, metric_importances
from paretune.storage import DuckDBStorage, RunRecord, Storage, StorageError
from paretune.storage.report import (ExperimentReport, Version, experiment_report, experiment_summary, format_number,
                            report_version)

logger = logging.getLogger("paretune.dashboard")

ID_PATTERN = re.compile(r"^[1-9][0-9]{0,17}$")
READ_METHODS = {"GET", "HEAD"}
REFRESH_S = 3.0
CACHED_REPORTS = 8

templates = Environment(loader=PackageLoader("paretune.dashboard", "templates"), autoescape=select_autoescape())
templates.filters["number"] = format_number


class PageError(Exception):
    """An answer other than the page asked for: its status, a title and what to do."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def plotly_js_path() -> Path:
    """plotly.js as shipped inside the plotly package: the dashboard needs no internet."""
    return Path(str(files("plotly") / "package_data" / "plotly.min.js"))


def parse_id(text: str, what: str) -> int:
    if not ID_PATTERN.match(text):
        raise PageError(400, "Malformed id", f"{what} id {text[:40]!r} is not a positive whole number, e.g. /{what}s/1")
    return int(text)


class Dashboard:
    """The app's state: the database path and small caches keyed by an experiment's version."""

    def __init__(self, db_path: str | Path, refresh_s: float = REFRESH_S):
        self.db_path = str(db_path)
        self.refresh_s = refresh_s
        self._reports: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._importances: OrderedDict[tuple[int, str], list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def store(self) -> Iterator[Storage]:
        """A read-only store for one request; a missing file is said, never created."""
        try:
            storage = DuckDBStorage(self.db_path, read_only=True)
        except StorageError as error:
            raise PageError(503, "Database unavailable", str(error)) from None
        try:
            yield storage
        finally:
            storage.close()

    def experiment_version(self, storage: Storage, experiment_id: int) -> Version:
        try:
            return report_version(storage, experiment_id)
        except StorageError:
            raise PageError(404, "Unknown experiment", f"there is no experiment {experiment_id} in {self.db_path}; "
                                                       "the experiments page lists those there") from None

    def report_json(self, experiment_id: int) -> bytes:
        with self.store() as storage:
            version = self.experiment_version(storage, experiment_id)
            key = (experiment_id, version.token())
            cached = self._cached(self._reports, key)
            if cached is None:
                report = experiment_report(storage, experiment_id)
                cached = orjson.dumps(experiment_payload(report, self._known_importances(report)))
                self._remember(self._reports, (experiment_id, report.version.token()), cached)
            return cached

    def _known_importances(self, report: ExperimentReport) -> list[dict[str, Any]] | None:
        """The importances when they cost nothing (too few observations: each metric's reason) or
        are cached, so the panel draws on the first load; else None, and the page fetches them."""
        key = (report.experiment.id, report.version.token())
        cached = self._cached(self._importances, key)
        if cached is None and importance_is_cheap(report):
            cached = importance_payload(report_importances(report))
            self._remember(self._importances, key, cached)
        return cached

    def importances(self, experiment_id: int) -> list[dict[str, Any]]:
        """Computed once per version of the experiment (a forest per optimized metric)."""
        with self.store() as storage:
            version = self.experiment_version(storage, experiment_id)
            cached = self._cached(self._importances, (experiment_id, version.token()))
            if cached is not None:
                return cached
            report = experiment_report(storage, experiment_id)
        result = importance_payload(report_importances(report))
        self._remember(self._importances, (experiment_id, report.version.token()), result)
        return result

    def _cached(self, cache: OrderedDict, key: tuple[int, str]) -> Any:
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        return None

    def _remember(self, cache: OrderedDict, key: tuple[int, str], value: Any) -> None:
        with self._lock:
            cache[key] = value
            while len(cache) > CACHED_REPORTS:
                cache.popitem(last=False)


def importance_is_cheap(report: ExperimentReport) -> bool:
    """Too few completed observations to fit a forest: the answer is only the reason why."""
    completed = sum(1 for status in report.columns.status if status != "failed")
    return completed < MIN_OBSERVATIONS


def report_importances(report: ExperimentReport):  # type: ignore[no-untyped-def]
    """Importances from the report model's columns (failed observations have no values, so they drop out)."""
    return metric_importances(report.spec, report.columns.assignments, report.columns.values)


def experiment_summaries(storage: Storage, *, archived: bool = False) -> list[dict[str, Any]]:
    """Every experiment's summary, newest first, its best trials named by trial number; archived
    experiments only when asked for (as `paretune list --all`)."""
    return [summary_payload(experiment_summary(storage, record)) for record in reversed(storage.list_experiments())
            if archived or record.state != "archived"]


def run_trial_number(storage: Storage, run: RunRecord) -> int | None:
    if run.experiment_id is None or run.suggestion_id is None:
        return None
    return storage.trial_numbers(run.experiment_id, [run.suggestion_id]).get(run.suggestion_id)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status)


def json_response(data: Any, status: int = 200) -> Response:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


class Pages:
    """The dashboard's routes over one `Dashboard`: HTML pages, their JSON, and every error answer."""

    def __init__(self, dashboard: Dashboard):
        self.dashboard = dashboard

    def routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.experiments_page),
            Route("/experiments/{ref}", self.experiment_page),
            Route("/runs/{ref}", self.run_page),
            Route("/api/experiments", self.experiments_api),
            Route("/api/experiments/{ref}", self.report_api),
            Route("/api/experiments/{ref}/version", self.version_api),
            Route("/api/experiments/{ref}/importance", self.importance_api),
            Route("/api/runs/{ref}", self.run_api),
            Route("/static/plotly.min.js", self.plotly_js),
            Mount("/static", StaticFiles(packages=[("paretune.dashboard", "static")]), name="static"),
        ]

    def experiments_page(self, request: Request) -> Response:
        archived = _wants_archived(request)
        with self.dashboard.store() as storage:
            summaries = experiment_summaries(storage, archived=True)
        hidden = 0 if archived else sum(1 for s in summaries if s["state"] == "archived")
        return render("experiments.html", summaries=[s for s in summaries if archived or s["state"] != "archived"],
                      hidden_archived=hidden, showing_archived=archived, db_path=self.dashboard.db_path,
                      refresh_ms=int(self.dashboard.refresh_s * 1000),
                      list_url="/api/experiments" + ("?archived=1" if archived else ""))

    def experiment_page(self, request: Request) -> Response:
        experiment_id = parse_id(request.path_params["ref"], "experiment")
        with self.dashboard.store() as storage:
            version = self.dashboard.experiment_version(storage, experiment_id)
            record = storage.get_experiment(experiment_id)
        config = {"dataUrl": f"/api/experiments/{experiment_id}", "versionUrl": f"/api/experiments/{experiment_id}/version",
                  "importanceUrl": f"/api/experiments/{experiment_id}/importance", "runUrl": "/runs/",
                  "refreshMs": int(self.dashboard.refresh_s * 1000), "version": version.token(), "live": True}
        return render("experiment.html", title=record.name, experiment_id=experiment_id,
                      db_path=self.dashboard.db_path, static=False, config_json=_script_json(config), data_json=None)

    def run_page(self, request: Request) -> Response:
        with self.dashboard.store() as storage:
            run, data = self._run(storage, parse_id(request.path_params["ref"], "run"))
            experiment = storage.get_experiment(run.experiment_id) if run.experiment_id else None
        return render("run.html", run=data, experiment=experiment, db_path=self.dashboard.db_path,
                      run_json=_script_json(data))

    def _run(self, storage: Storage, run_id: int) -> tuple[RunRecord, dict[str, Any]]:
        try:
            run = storage.get_run(run_id)
        except StorageError:
            raise PageError(404, "Unknown run", f"there is no run {run_id} in {self.dashboard.db_path}") from None
        return run, run_payload(run, storage.checkpoints(run_id), run_trial_number(storage, run),
                                storage.stop_decisions(run.suggestion_id) if run.suggestion_id else {})

    def experiments_api(self, request: Request) -> Response:
        with self.dashboard.store() as storage:
            return json_response(experiment_summaries(storage, archived=_wants_archived(request)))

    def report_api(self, request: Request) -> Response:
        return json_response(self.dashboard.report_json(parse_id(request.path_params["ref"], "experiment")))

    def version_api(self, request: Request) -> Response:
        experiment_id = parse_id(request.path_params["ref"], "experiment")
        with self.dashboard.store() as storage:
            version = self.dashboard.experiment_version(storage, experiment_id)
        return json_response({"version": version.token(), "observations": version.observations,
                              "open": version.open_suggestions, "state": version.state})

    def importance_api(self, request: Request) -> Response:
        return json_response(self.dashboard.importances(parse_id(request.path_params["ref"], "experiment")))

    def run_api(self, request: Request) -> Response:
        with self.dashboard.store() as storage:
            return json_response(self._run(storage, parse_id(request.path_params["ref"], "run"))[1])

    def plotly_js(self, request: Request) -> Response:
        return FileResponse(plotly_js_path(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    # -- errors: JSON under /api/, an HTML page elsewhere; never a traceback -------------------------
    def answer_error(self, request: Request, status: int, title: str, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return json_response({"error": title, "detail": message}, status)
        return render("error.html", status=status, code=status, title=title, message=message,
                      db_path=self.dashboard.db_path)

    async def page_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, PageError)
        return self.answer_error(request, error.status, error.title, error.message)

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            return self.answer_error(request, 404, "Not found", f"nothing at {request.url.path}; start from the "
                                                               "experiments page")
        return self.answer_error(request, error.status_code, "Refused", str(error.detail))

    async def server_error(self, request: Request, error: Exception) -> Response:
        logger.exception("dashboard error on %s", request.url.path)
        return self.answer_error(request, 500, "Something went wrong", f"{type(error).__name__} while reading "
                                 f"{self.dashboard.db_path}; the server log has the details")


class ReadOnly:
    """The dashboard never writes: every method but GET and HEAD is refused."""

    def __init__(self, app: ASGIApp, pages: Pages):
        self.app, self.pages = app, pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in READ_METHODS:
            request = Request(scope, receive)
            response = self.pages.answer_error(request, 405, "Read-only",
                                               f"{request.method} refused: the dashboard only reads the database")
            response.headers["Allow"] = "GET, HEAD"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(db_path: str | Path, refresh_s: float = REFRESH_S) -> Starlette:
    """The dashboard over `db_path` (read-only); the experiment page polls every `refresh_s` seconds."""
    pages = Pages(Dashboard(db_path, refresh_s))
    return Starlette(
        routes=pages.routes(),
        middleware=[Middleware(ReadOnly, pages=pages)],
        exception_handlers={PageError: pages.page_error, HTTPException: pages.http_error, Exception: pages.server_error},
    )


def _wants_archived(request: Request) -> bool:
    return request.query_params.get("archived", "") not in ("", "0", "false", "no")


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(data, default=str).replace("</", "<\\/")

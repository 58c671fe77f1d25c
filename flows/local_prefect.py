"""One Prefect API for a flow and its Dask workers when no server is configured.

Without `PREFECT_API_URL`, Prefect starts a private ephemeral server in each process that
reports a run: every Dask worker process would start its own. `prefect_api()` starts one here
instead; its URL reaches the workers inside the settings prefect-dask serializes with each task.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)


@contextmanager
def prefect_api(home: str | Path | None = None) -> Iterator[str]:
    """Yield the API URL in force: the configured one, or a local server's (PREFECT_HOME=`home`).

    Logs and events still queued are sent before the local server stops.
    """
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    local: dict = {PREFECT_SERVER_ANALYTICS_ENABLED: False}
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)
        local[PREFECT_HOME] = Path(home).resolve()
    with temporary_settings(local):
        server = SubprocessASGIServer()
        server.start()
        try:
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                yield server.api_url
                APILogWorker.drain_all()
                EventsWorker.drain_all()
        finally:
            server.stop()

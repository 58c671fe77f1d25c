"""A Prefect API for command-line runs when no server is configured.

Only the flow process talks to Prefect (its flow run, the trials' task runs, artifacts); Dask
workers never do. Without `PREFECT_API_URL` Prefect would start a throwaway ephemeral server
whose history is gone when the run ends. `prefect_api()` starts one server for the whole
command (the tune flow and the report flow it runs), under a chosen `PREFECT_HOME` so the demo's
runs can be browsed afterwards, and sends queued logs and events before stopping it.

The server is a child process that dies with the command, however the command ends: beside it
runs `flows.orphan_guard`, which kills it once this process is gone, so a `kill -9` of a flow
leaves no orphaned server behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

# Prefect's default (20 s) is too short for a first start (database migrations) on a busy
# two-core machine; a larger configured value still wins.
START_TIMEOUT_S = 300


class GuardedPrefectServer(SubprocessASGIServer):
    """Prefect's subprocess server, each process of it watched by an orphan guard from birth
    (a kill while the server is still starting must not orphan it either)."""

    def __init__(self, port: int | None = None):
        super().__init__(port)
        self.guards: list[subprocess.Popen[bytes]] = []

    def _run_uvicorn_command(self) -> subprocess.Popen[bytes]:
        process = super()._run_uvicorn_command()
        self.guards.append(subprocess.Popen([sys.executable, "-m", "flows.orphan_guard", str(os.getpid()),
                                             str(process.pid)]))
        return process

    def stop(self) -> None:
        super().stop()
        for guard in self.guards:
            guard.kill()
            guard.wait()
        self.guards.clear()


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
        server = GuardedPrefectServer()
        try:
            server.start(timeout=max(START_TIMEOUT_S, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
            with temporary_settings({PREFECT_API_URL: server.api_url}):
                yield server.api_url
                APILogWorker.drain_all()
                EventsWorker.drain_all()
        finally:
            server.stop()

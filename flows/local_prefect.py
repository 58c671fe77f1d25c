"""A Prefect API for command-line runs when no server is configured.

Only the flow process talks to Prefect (its flow run, the trials' task runs, artifacts); Dask
workers never do. Without `PREFECT_API_URL` Prefect would start a throwaway ephemeral server
whose history is gone when the run ends. `prefect_api()` starts one `prefect server start` for
the whole command (the tune flow and the report flow it runs), under a chosen `PREFECT_HOME` so
the demo's runs can be browsed afterwards (its UI is served while the command runs), and sends
queued logs and events before stopping it.

The server lives exactly as long as the command:
- it runs in a session of its own, so the terminal's Ctrl-C reaches the flow (which stops its
  sweep and still records the cancel through this server), not the server;
- beside it runs `flows.orphan_guard`, which kills it once the command is gone, however it
  went (`kill -9` included).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

# A first start runs the server's database migrations: slow on a busy two-core machine.
START_TIMEOUT_S = 300
STOP_TIMEOUT_S = 10


class LocalPrefectServer:
    """`prefect server start` on a free loopback port, in its own session, guarded against orphaning."""

    def __init__(self, home: Path):
        self.home = home
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._server: subprocess.Popen[bytes] | None = None
        self._guard: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        environment = os.environ | {"PREFECT_HOME": str(self.home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        environment.pop("PREFECT_API_URL", None)
        log = open(self.home / "server.log", "ab")
        self._server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-scheduler", "--no-late-runs", "--analytics-off"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        self._guard = subprocess.Popen([sys.executable, "-m", "paretune.flows.orphan_guard", str(os.getpid()),
                                        str(self._server.pid), "--group"], start_new_session=True)
        deadline = time.monotonic() + timeout_s
        with httpx.Client() as client:
            while True:
                if self._server.poll() is not None:
                    raise RuntimeError(f"the local Prefect server exited with code {self._server.returncode}; "
                                       f"see {self.home / 'server.log'}")
                try:
                    if client.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the local Prefect server did not answer within {timeout_s:g} s; "
                                       f"see {self.home / 'server.log'}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self._server is not None and self._server.poll() is None:
            _signal_group(self._server.pid, signal.SIGTERM)
            try:
                self._server.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(self._server.pid, signal.SIGKILL)
                self._server.wait()
        if self._guard is not None:
            self._guard.kill()
            self._guard.wait()


def _signal_group(leader: int, number: int) -> None:
    try:
        os.killpg(leader, number)
    except ProcessLookupError:
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def prefect_api(home: str | Path | None = None) -> Iterator[str]:
    """Yield the API URL in force: the configured one, or a local server's (PREFECT_HOME=`home`,
    by default Prefect's own home).

    Logs and events still queued are sent before the local server stops, also when the command
    ends by an exception (a cancelled sweep's exit): otherwise Prefect's own exit handler
    waits for them forever on the stopped server.
    """
    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    folder = Path(home).resolve() if home else PREFECT_HOME.value()
    folder.mkdir(parents=True, exist_ok=True)
    server = LocalPrefectServer(folder)
    try:
        server.start()
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                APILogWorker.drain_all()
                EventsWorker.drain_all()
    finally:
        server.stop()

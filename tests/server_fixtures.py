"""A real `paretune serve` subprocess on loopback, and the tokens to reach it (tests/test_server_*.py)."""

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

import requests

PARETUNE = [sys.executable, "-m", "paretune.cli"]
START_TIMEOUT_S = 60.0


def paretune(*args: str, db: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*PARETUNE, "--db", str(db), *args], capture_output=True, text=True, input=stdin,
                          timeout=120)


def make_token(db: Path, name: str = "tests", *, read_only: bool = False) -> str:
    done = paretune("token", "create", name, *(["--read-only"] if read_only else []), db=db)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, db: Path, log: Path):
        self.db, self.log = db, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([*PARETUNE, "--db", str(self.db), "serve", "--port", str(self.port)],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not answer /health in {START_TIMEOUT_S} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """kill -9: no chance to clean up."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def running_server(db: Path, log: Path) -> Iterator[Server]:
    server = Server(db, log).start()
    try:
        yield server
    finally:
        server.stop()


def sigopt_env(server: Server, token: str, **extra: str) -> dict[str, str]:
    return os.environ | {"SIGOPT_API_URL": server.url, "SIGOPT_API_TOKEN": token} | extra


def run_client(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """SigOpt's own client in a fresh interpreter (it reads its settings at import)."""
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)

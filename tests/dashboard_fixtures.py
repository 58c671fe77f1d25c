"""Helpers for the tests that look at pages: a seeded DuckDB file, free ports, headless Chromium.

Chromium is Debian's (`apt-get install chromium`, which .ci/run does when it is missing),
driven by Playwright's Python package through `executable_path`: Playwright's own browser
download needs the internet. Screenshots go to `$PARETUNE_SCREENSHOTS` (default
`.pytest-artifacts/screenshots` in the repository) so a person can look at them after a run.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import paretune
from paretune.failures import OutOfMemory
from paretune.testfunctions import SIZE_VS_ERROR_SPEC, size_vs_error
from paretune.storage import DuckDBStorage, StorageError

ROOT = Path(__file__).resolve().parents[1]
SPEC = SIZE_VS_ERROR_SPEC | {"name": "dashboard-demo", "observation_budget": 40,
                             "metrics": SIZE_VS_ERROR_SPEC["metrics"] + [
                                 {"name": "latency_cap", "objective": "minimize", "strategy": "constraint",
                                  "threshold": 12.0}]}


def chromium_path() -> str:
    found = os.environ.get("PARETUNE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is needed for the browser tests: apt-get install -y chromium (.ci/run does it)")
    return found


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("PARETUNE_SCREENSHOTS", ROOT / ".pytest-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def objective(assignments: dict, memory_budget: float = 3000.0) -> dict[str, float]:
    values = size_vs_error(assignments, paretune.TrialContext(settings={"memory_budget": memory_budget, "epochs": 3}))
    return values | {"latency_cap": values["latency_ms"]}


def seed_experiment(path: Path, trials: int) -> int:
    """An experiment of `trials` recorded runs (three checkpoints each; a too-large model fails)."""
    experiment = paretune.create_experiment(SPEC, db=str(path))
    for index, run in zip(range(trials), experiment.loop()):
        with run:
            budget = 900.0 if index % 5 == 4 else 3000.0  # every fifth trial runs out of memory
            for epoch in (1, 2, 3):
                run.log_checkpoint(epoch, {"loss": 1.0 / epoch + 0.01 * index, "accuracy": 0.2 * epoch})
            try:
                run.log_metrics(objective(run.params, budget))
            except OutOfMemory as failure:
                run.log_failure(f"out_of_memory: {failure}")
    experiment.storage.close()
    return experiment.id


def add_observation(path: Path, experiment_id: int, timeout_s: float = 30) -> int:
    """One more observation through the store, as a writer; a reader holding the file makes it retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            store = DuckDBStorage(path)
            break
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        experiment = paretune.open_experiment(experiment_id, storage=store)
        suggestion = experiment.suggest()
        try:
            return experiment.observe(suggestion, values=objective(suggestion.assignments)).id
        except OutOfMemory as failure:
            return experiment.observe(suggestion, failed=True, reason=f"out_of_memory: {failure}").id
    finally:
        store.close()


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout_s} s")


def serve_dashboard(db: Path, refresh_s: float = 0.5) -> Iterator[str]:
    """`paretune dashboard` as a user starts it, on a free loopback port; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "paretune.cli", "--db", str(db), "dashboard", "--port", str(port),
         "--refresh", str(refresh_s)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/experiments", process, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def launch_browser(playwright):  # type: ignore[no-untyped-def]
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for a test module (import this fixture into the module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        yield browser
        browser.close()


def checked_page(browser, width: int) -> Iterator:  # type: ignore[no-untyped-def]
    """A page `width` pixels wide that fails the test on any JavaScript error."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors: {errors}"


def stop_group(group: int, grace_s: float = 15) -> None:
    """SIGTERM to a process group, SIGKILL to whatever of it is left after `grace_s`."""
    deadline = time.monotonic() + grace_s
    for number in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, number)
        except ProcessLookupError:
            return
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)

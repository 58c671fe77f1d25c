"""The report artifacts as a person sees them in the Prefect UI: a real `prefect server` (UI
included) on a free port, the report flow and the live report publishing to it, and headless
Chromium opening the artifact pages. The frontier picture must actually render (the img has
a natural width), offline: it is a PNG in a data: URI inside a markdown artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from prefect import flow
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from paretune.flows.report import main as report_main
from paretune.flows.report import report
from paretune.storage import DuckDBStorage
from paretune.storage.report import format_number
from paretune.tasks.report import LiveReport
from tests.dashboard_fixtures import (ROOT, add_observation, browser, free_port, screenshot_dir,  # noqa: F401 (a fixture)
                                      seed_experiment, wait_for_http)

pytestmark = pytest.mark.slow
TRIALS = 12


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory):
    """`prefect server start` with its UI, as a user runs it; yields (API URL, UI URL)."""
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    ui = f"http://127.0.0.1:{port}"
    env = os.environ | {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                        "PREFECT_UI_API_URL": f"{ui}/api", "PREFECT_API_URL": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-services"],
        env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_http(f"{ui}/api/health", process, timeout_s=180)
        with temporary_settings({PREFECT_API_URL: f"{ui}/api"}):
            yield f"{ui}/api", ui
            APILogWorker.drain_all()
            EventsWorker.drain_all()
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db = tmp_path_factory.mktemp("artifacts") / "sweep.duckdb"
    return db, seed_experiment(db, TRIALS)


def artifacts(api: str, **filters) -> list[dict]:
    response = httpx.post(f"{api}/artifacts/filter", json={"artifacts": filters, "sort": "CREATED_DESC"})
    response.raise_for_status()
    return response.json()


def shows_picture(browser, url: str, screenshot: str, clicks: tuple[str, ...] = ()) -> dict:
    """Open `url`, click through `clicks` (texts on the page), wait for the frontier picture to
    render; return its img's state. Each page on the way is saved as a screenshot."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.goto(url)
        for step, text in enumerate(clicks):
            target = page.get_by_text(text, exact=True).first
            target.wait_for(timeout=60_000)
            page.screenshot(path=screenshot_dir() / f"{step}-{screenshot}", full_page=True)
            target.click()
        image = page.wait_for_selector("img[alt^='Pareto frontier of']", timeout=60_000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image, timeout=30_000)
        state = image.evaluate("img => ({width: img.naturalWidth, height: img.naturalHeight, "
                               "shown: img.getBoundingClientRect().width, src: img.src.slice(0, 22)})")
        page.screenshot(path=screenshot_dir() / screenshot, full_page=True)
        return state
    finally:
        page.close()


def test_report_flow_artifacts_render_in_the_prefect_ui(prefect_ui, seeded, browser, tmp_path):
    api, ui = prefect_ui
    db, experiment_id = seeded
    html = tmp_path / "report.html"
    result = report(experiment=str(experiment_id), db_path=str(db), html=str(html))
    assert html.is_file() and result.static_report == str(html)

    prefix = f"dashboard-demo-{experiment_id}-"
    flow_run_id = artifacts(api, key={"any_": [prefix + "summary"]})[0]["flow_run_id"]
    keys = {a["key"]: a for a in artifacts(api, flow_run_id={"any_": [flow_run_id]})}
    assert {prefix + what for what in ("frontier", "thresholds", "summary", "frontier-picture", "static-report")} <= set(keys)
    with DuckDBStorage(db, read_only=True) as store:
        frontier = store.query("SELECT * FROM pareto_frontier WHERE experiment_id = ?", [experiment_id])
    table = {int(row["trial"]): row for row in json.loads(keys[prefix + "frontier"]["data"])}
    assert sorted(table) == sorted(p["suggestion_id"] for p in frontier)
    for point in frontier:  # the view's numbers, rounded by the one rule
        row = table[point["suggestion_id"]]
        assert (row["accuracy"], row["size"]) == (format_number(point["value_1"]), format_number(point["value_2"]))
        assert row["learning_rate"] == format_number(json.loads(point["assignments"])["learning_rate"])
    thresholds = json.loads(keys[prefix + "thresholds"]["data"])
    assert len(thresholds) == TRIALS and "margin to latency_cap <= 12" in thresholds[0]
    summary = keys[prefix + "summary"]["data"]
    assert f"**Budget used:** {TRIALS} of 40 observations" in summary and str(html) in summary

    picture = keys[prefix + "frontier-picture"]
    state = shows_picture(browser, f"{ui}/artifacts/artifact/{picture['id']}", "prefect-artifact-frontier-picture.png")
    assert state["width"] == 900 and state["shown"] > 400 and state["src"] == "data:image/png;base64,"


def test_live_report_updates_one_set_of_artifacts_on_the_running_flow(prefect_ui, seeded, browser):
    api, ui = prefect_ui
    db, experiment_id = seeded

    @flow(name="live-report-check")
    def sweep_like() -> tuple[str, bool, bool, bool]:
        from prefect.runtime import flow_run

        from paretune.storage import DuckDBStorage

        with DuckDBStorage(db) as store:
            live = LiveReport(store, experiment_id)
            first = live.publish()
            unchanged = live.publish()
        add_observation(db, experiment_id)
        with DuckDBStorage(db) as store:
            live.storage = store  # the same live report, reading the store after the new observation
            changed = live.publish()
        return flow_run.id, first, unchanged, changed

    flow_run_id, *published = sweep_like()
    assert published == [True, False, True]
    on_run = artifacts(api, flow_run_id={"any_": [flow_run_id]})
    assert sorted(a["key"].rsplit(f"-{experiment_id}-", 1)[1] for a in on_run) == [
        "frontier", "frontier-picture", "summary", "thresholds"]  # one of each, updated in place
    summary = next(a for a in on_run if a["key"].endswith("-summary"))
    assert f"**Budget used:** {TRIALS + 1} of 40 observations" in summary["data"]
    picture_key = next(a["key"] for a in on_run if a["key"].endswith("-frontier-picture"))
    picture = shows_picture(browser, f"{ui}/runs/flow-run/{flow_run_id}", "prefect-flow-run-artifacts.png",
                            clicks=("Artifacts", picture_key))
    assert picture["width"] == 900


def test_report_command_refuses_bad_input_before_prefect_starts(tmp_path, seeded, capsys):
    db, _ = seeded
    for argv, message in [([str(1), "--db", str(tmp_path / "missing.duckdb")], "no database at"),
                          (["no-such-experiment", "--db", str(db)], "no experiment 'no-such-experiment'")]:
        with pytest.raises(SystemExit) as exit_:
            report_main(argv)
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "missing.duckdb").exists()
    completed = subprocess.run([sys.executable, "-m", "paretune.cli", "report", "7", "--db", str(db)], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1 and "no experiment '7'" in completed.stderr
    assert "Traceback" not in completed.stderr and "prefect" not in completed.stderr.lower()

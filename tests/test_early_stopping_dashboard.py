"""The run page shows where a trial stopped: the run payload carries the store's first stop
decision (checkpoint, epoch, rung, reasons) and the checkpoint chart marks it, in headless
Chromium against `paretune dashboard` serving a real DuckDB file."""

from __future__ import annotations

import httpx
import pytest

import paretune
from paretune.dashboard.payload import stop_marker
from paretune.storage import DuckDBStorage
from tests.dashboard_fixtures import browser, checked_page, screenshot_dir, serve_dashboard  # noqa: F401
from tests.test_early_stopping_store import DEFINITION, train

CHECKPOINTS = [{"epoch": epoch, "values": {"f1": 10.0 * epoch}} for epoch in (2, 4, 6)]


def test_the_marker_is_the_first_checkpoint_told_to_stop_with_its_epoch_rung_and_reasons():
    decisions = {1: (False, {"pareto": False}), 2: (True, {"pareto": True, "flat": False}),
                 3: (True, {"max_checkpoints": True})}
    marker = stop_marker(CHECKPOINTS, decisions)
    assert {k: marker[k] for k in ("checkpoint", "epoch", "rung", "reasons")} == {
        "checkpoint": 2, "epoch": 4, "rung": 2, "reasons": ["pareto"]}
    assert marker["text"].startswith("Told to stop at epoch 4, checkpoint 2 (rung 2): Pareto early stopping")


def test_a_convergence_stop_names_its_criterion_and_no_rung_and_a_trial_never_told_has_no_marker():
    marker = stop_marker(CHECKPOINTS, {3: (True, {"flat": True, "max_checkpoints": False})})
    assert (marker["checkpoint"], marker["epoch"], marker["rung"], marker["reasons"]) == (3, 6, None, ["flat"])
    assert "convergence criterion 'flat' was met" in marker["text"]
    assert stop_marker(CHECKPOINTS, {1: (False, {"pareto": False}), 2: (False, {})}) is None
    assert stop_marker(CHECKPOINTS, {}) is None


@pytest.fixture(scope="module")
def stopped_sweep(tmp_path_factory):
    """Four trials of one size; the 2nd and 4th are the worse half at rung 1 and stop there."""
    db = tmp_path_factory.mktemp("stopped") / "stop.duckdb"
    experiment = paretune.create_experiment(DEFINITION, db=str(db))
    for (f1, size), run in zip([(30.0, 10.0), (10.0, 10.0), (31.0, 10.0), (5.0, 10.0)], experiment.loop()):
        with run:
            train(run, f1, size)
    runs = {run.status: run.id for run in experiment.storage.list_runs(experiment.id)}
    experiment.storage.close()
    return db, runs


@pytest.mark.slow
def test_the_run_page_marks_where_a_stopped_trial_stopped_and_says_why(stopped_sweep, browser):  # noqa: F811
    db, runs = stopped_sweep
    with DuckDBStorage(db, read_only=True) as store:
        assert store.get_run(runs["stopped"]).status == "stopped"
    for server in serve_dashboard(db):
        payload = httpx.get(f"{server}/api/runs/{runs['stopped']}").json()
        assert payload["stop"]["checkpoint"] == 1 and payload["stop"]["rung"] == 1
        assert payload["stop"]["reasons"] == ["pareto"] and payload["checkpoints"]["epoch"] == [1]
        assert httpx.get(f"{server}/api/runs/{runs['completed']}").json()["stop"]["reasons"] == ["max_checkpoints"]
        for page in checked_page(browser, 1200):
            page.goto(f"{server}/runs/{runs['stopped']}")
            assert "Told to stop at epoch 1, checkpoint 1 (rung 1): Pareto early stopping" in page.inner_text(
                "#stop-reason")
            page.wait_for_selector("#checkpoints [data-metric='f1'] .main-svg")
            assert "One checkpoint (epoch 1): a curve needs two." in page.inner_text("#checkpoints")  # not "so far"
            marks = page.evaluate("() => [...document.querySelectorAll('#checkpoints [data-metric]')].map(d => "
                                  "[d.dataset.metric, d.layout.shapes[0].x0, d.layout.annotations[0].text])")
            assert marks == [["f1", 1, "stopped (rung 1)"], ["size", 1, "stopped (rung 1)"]]
            assert page.locator("#checkpoints .shapelayer path").count() == 2  # drawn, not only configured
            page.screenshot(path=screenshot_dir() / "dashboard-run-stopped.png", full_page=True)
            page.goto(f"{server}/runs/{runs['completed']}")  # trained to the end: told to stop at max_checkpoints
            assert "checkpoint 3: it reached the training monitor's max_checkpoints" in page.inner_text("#stop-reason")
            page.wait_for_selector("#checkpoints [data-metric='f1'] .main-svg")
            assert page.evaluate("() => document.querySelector('#checkpoints [data-metric=f1]').layout"
                                 ".annotations[0].text") == "told to stop"

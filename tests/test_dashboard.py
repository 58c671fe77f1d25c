"""The dashboard in a real browser: `paretune dashboard` serving a seeded DuckDB file, driven by
Debian's headless Chromium through Playwright. One server and one browser for the module."""

from __future__ import annotations

import httpx
import pytest

from paretune.cli import main as cli
from paretune.storage import DuckDBStorage
from paretune.storage.report import experiment_report, format_number
from tests.dashboard_fixtures import (add_observation, browser, checked_page, screenshot_dir, seed_experiment,  # noqa: F401
                                      serve_dashboard)

pytestmark = pytest.mark.slow
TRIALS = 15


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db = tmp_path_factory.mktemp("dashboard") / "sweep.duckdb"
    return db, seed_experiment(db, TRIALS)


@pytest.fixture(scope="module")
def server(seeded):
    yield from serve_dashboard(seeded[0])


@pytest.fixture
def page(browser):
    yield from checked_page(browser, 1400)


PLOTTED = """() => {
  const traces = document.getElementById('scatter').data || [];
  const points = traces.filter(t => ['feasible', 'infeasible', 'frontier', 'failed'].includes(t.meta));
  return {data: points.reduce((n, t) => n + t.x.length, 0),
          drawn: document.querySelectorAll('#scatter .scatterlayer .trace .points path.point').length};
}"""


def plotted(page) -> dict:
    return page.evaluate(PLOTTED)


def test_the_experiments_page_lists_the_seeded_experiment(server, seeded, page):
    page.goto(server + "/")
    row = page.locator("#experiments tr[data-experiment]")
    assert row.count() == 1
    text = row.inner_text()
    assert "dashboard-demo" in text and "active" in text and f"{TRIALS} / 40" in text
    with DuckDBStorage(seeded[0], read_only=True) as store:
        summary = experiment_report(store, seeded[1]).summary
    best_accuracy = next(b for b in summary.best if b.metric == "accuracy")
    assert format_number(best_accuracy.value) in text  # the same rounded number as every other front
    page.screenshot(path=screenshot_dir() / "dashboard-experiments.png", full_page=True)


def test_experiment_page_draws_every_observation_and_shows_a_clicked_points_assignments(server, seeded, page):
    db, experiment_id = seeded
    with DuckDBStorage(db, read_only=True) as store:
        report = experiment_report(store, experiment_id)
    page.goto(f"{server}/experiments/{experiment_id}")
    page.wait_for_function(f"() => document.body.dataset.version === '{report.version.token()}'")
    assert plotted(page) == {"data": TRIALS, "drawn": TRIALS}
    statuses = page.evaluate("() => Object.fromEntries(document.getElementById('scatter').data"
                             ".filter(t => t.meta !== 'line').map(t => [t.meta, t.x.length]))")
    assert statuses["failed"] == report.summary.failed > 0
    assert statuses["frontier"] == len(report.frontier) > 0
    assert statuses["feasible"] + statuses["frontier"] == report.summary.feasible

    point = page.locator("#scatter .scatterlayer .trace .points path.point").first
    box = point.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#selected-assignments")
    selected = page.inner_text("#selected")
    trial = int(selected.split("Trial ")[1].split()[0])
    chosen = next(p for p in report.points if p.suggestion_id == trial)
    for name, value in chosen.assignments.items():
        assert f"{name}\t{format_number(value)}" in selected
    assert page.locator("#selected a[href^='/runs/']").count() == 1

    page.wait_for_selector("#importance .main-svg")
    assert page.get_attribute("#importance", "data-metrics") == "accuracy,size"
    assert page.locator("#threshold-table tbody tr").count() == 2  # accuracy >= 0.3 and latency_cap <= 12
    assert "accuracy >= 0.3" in page.inner_text("#threshold-table")
    page.screenshot(path=screenshot_dir() / "dashboard-experiment.png", full_page=True)


def test_trials_table_sorts_and_filters(server, seeded, page):
    db, experiment_id = seeded
    page.goto(f"{server}/experiments/{experiment_id}")
    page.wait_for_selector("#trials-table tbody tr")
    assert page.locator("#trials-table tbody tr").count() == TRIALS
    page.click("#trials-table th[data-key='v:size']")
    column = page.eval_on_selector_all("#trials-table th", "cells => cells.map(c => c.dataset.key)").index("v:size") + 1
    sizes = [float(t.replace(",", "")) for t in page.eval_on_selector_all(
        f"#trials-table tbody tr td:nth-child({column})", "cells => cells.map(c => c.textContent).filter(t => t)")]
    assert sizes == sorted(sizes) and len(sizes) > 3
    page.select_option("#trial-status", "failed")
    failed = page.locator("#trials-table tbody tr")
    with DuckDBStorage(db, read_only=True) as store:
        report = experiment_report(store, experiment_id)
    assert failed.count() == report.summary.failed
    page.select_option("#trial-status", "all")
    page.fill("#trial-filter", "out_of_memory")
    page.wait_for_function(f"() => document.querySelectorAll('#trials-table tbody tr').length === {report.summary.failed}")
    # numbers in the table follow the one rule: the browser's port of format_number agrees with Python's
    for value in (0.3935102667101142, 22713216.0, 1.2346e-5, 123456.7, 71.23456, 999.99997, -4321.5, 1234.5678):
        assert page.evaluate(f"paretune.fmt({value!r})") == format_number(value)


def test_the_page_refreshes_when_an_observation_is_added(server, seeded, page):
    db, experiment_id = seeded
    page.goto(f"{server}/experiments/{experiment_id}")
    page.wait_for_function("() => document.body.dataset.version !== undefined")
    before = plotted(page)["data"]
    observation_id = add_observation(db, experiment_id)
    page.wait_for_function(f"() => ({PLOTTED})().data === {before + 1}", timeout=30_000)
    assert page.locator(f"#trials-table tbody tr[data-observation='{observation_id}']").count() == 1
    assert f"{before + 1} / 40" in page.inner_text("#summary")
    page.screenshot(path=screenshot_dir() / "dashboard-experiment-refreshed.png", full_page=True)


def test_run_page_shows_parameters_metrics_metadata_and_checkpoint_curves(server, seeded, page):
    db, experiment_id = seeded
    with DuckDBStorage(db, read_only=True) as store:
        run = next(r for r in store.list_runs(experiment_id) if r.status == "completed")
    page.goto(f"{server}/runs/{run.id}")
    for name, value in run.parameters.items():
        assert f"{name}\t{format_number(value)}" in page.inner_text("#run-parameters")
    assert f"accuracy\t{format_number(run.metrics['accuracy'])}" in page.inner_text("#run-metrics")
    assert run.host in page.inner_text("#run-metadata")
    page.wait_for_selector("#checkpoints [data-metric='loss'] .main-svg")
    curves = page.evaluate("() => [...document.querySelectorAll('#checkpoints [data-metric]')]"
                           ".map(d => [d.dataset.metric, d.data[0].x.length])")
    assert curves == [["accuracy", 3], ["loss", 3]]
    page.screenshot(path=screenshot_dir() / "dashboard-run.png", full_page=True)


@pytest.mark.parametrize(("path", "status", "text"), [
    ("/experiments/999", 404, "no experiment 999"),
    ("/experiments/abc", 400, "is not a positive whole number"),
    ("/experiments/1;DROP", 400, "is not a positive whole number"),
    ("/runs/999", 404, "no run 999"),
    ("/runs/-1", 400, "is not a positive whole number"),
    ("/nowhere", 404, "Not found"),
])
def test_bad_addresses_get_error_pages_without_a_traceback(server, page, path, status, text):
    response = page.goto(server + path)
    assert response.status == status
    body = page.inner_text("body")
    assert text in body and f"{status}" in body and "Traceback" not in body


def test_the_server_refuses_writes(server):
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = httpx.request(method, f"{server}/experiments/1")
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
        assert "only reads" in response.text
    assert httpx.post(f"{server}/api/experiments/1").json()["error"] == "Read-only"


def test_static_report_opens_offline_and_shows_the_scatter(seeded, browser, tmp_path, capsys):
    db, experiment_id = seeded
    target = tmp_path / "reports" / "experiment.html"
    assert cli(["--db", str(db), "report", str(experiment_id), "--html", str(target)]) == 0
    assert capsys.readouterr().out.strip().endswith("experiment.html")
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    requested: list[str] = []
    context.route("**/*", lambda route: (requested.append(route.request.url),
                                         route.continue_() if route.request.url.startswith("file:") else route.abort()))
    page = context.new_page()
    page.goto(target.as_uri())
    page.wait_for_function("() => document.body.dataset.version !== undefined")
    with DuckDBStorage(db, read_only=True) as store:
        observations = experiment_report(store, experiment_id).summary.observations
    assert plotted(page) == {"data": observations, "drawn": observations}
    page.wait_for_selector("#importance .main-svg")
    assert "static report" in page.inner_text("#live")
    assert all(url.startswith("file:") for url in requested)
    page.screenshot(path=screenshot_dir() / "static-report.png", full_page=True)
    context.close()


def test_cli_refuses_a_missing_database_without_creating_it(tmp_path, capsys):
    missing = tmp_path / "missing.duckdb"
    assert cli(["--db", str(missing), "dashboard", "--port", "8080"]) == 1
    assert cli(["--db", str(missing), "report", "1", "--html", str(tmp_path / "r.html")]) == 1
    errors = capsys.readouterr().err
    assert errors.count("no database at") == 2 and "Traceback" not in errors
    assert not missing.exists() and not (tmp_path / "r.html").exists()

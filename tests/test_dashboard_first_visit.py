"""The dashboard as a newcomer first sees it, in headless Chromium: the flagship demo's shape
(two optimized and seven stored metrics, five parameters, eight trials, long failure reasons),
a second experiment in the same file, a completed one, and runs with several checkpoints.

Every panel that cannot draw yet says why on the first load; the trials table fits its card;
a number reads the same in hovers, axes and tables; trials are numbered within their
experiment; the page and `paretune list` use one state word; checkpoint curves are lines.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import yaml

import paretune
from paretune.cli import main as cli
from paretune.storage.report import format_number
from tests.dashboard_fixtures import browser, checked_page, screenshot_dir, serve_dashboard  # noqa: F401

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = yaml.safe_load((ROOT / "experiments" / "bert_squad2_demo.yaml").read_text())
LONG_REASON = ("out_of_memory: the student needs 5,312 MB to train with batch 32 and sequences of 128 tokens; "
               "memory_limit_mb is 4,000 (lower n_layers or the batch size)")


def flagship_values(assignments: dict, rng: random.Random) -> dict[str, float]:
    layers = assignments["n_layers"]
    return {"HasAns_f1": 20 + 5 * layers + rng.random(), "num_parameters": 11_000_000 + 1_912_356 * layers,
            "HasAns_exact": 10 + 4 * layers, "exact": 50.1, "f1": 50.3, "NoAns_exact": 100.0,
            "inference_time": 1.234 * layers, "latency_ms": 3.4567 * layers, "peak_memory_mb": 812.5 + layers}


def seed(db: Path) -> dict[str, int]:
    """The flagship-shaped experiment (8 trials, 2 failed), then a second one whose trials are
    suggestions 9.., then a completed one."""
    rng = random.Random(3)
    flagship = paretune.create_experiment(FLAGSHIP, db=str(db))
    for index, run in zip(range(8), flagship.loop()):
        with run:
            for epoch in (1, 2, 3):
                run.log_checkpoint(epoch, {"HasAns_f1": 10.0 * epoch + index, "loss": 3.0 / epoch})
            if index in (2, 5):
                run.log_failure(LONG_REASON)
            else:
                run.log_metrics(flagship_values(run.params, rng))
    second = paretune.create_experiment(FLAGSHIP | {"name": "second"}, db=str(db))
    for _, run in zip(range(3), second.loop()):
        with run:
            run.log_metrics(flagship_values(run.params, rng))
    done = paretune.create_experiment(FLAGSHIP | {"name": "finished", "observation_budget": 2}, db=str(db))
    for _ in range(2):
        suggestion = done.suggest()
        done.observe(suggestion, values=flagship_values(suggestion.assignments, rng))
    ids = {"flagship": flagship.id, "second": second.id, "finished": done.id}
    for experiment in (flagship, second, done):
        experiment.storage.close()
    return ids


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db = tmp_path_factory.mktemp("first-visit") / "demo.duckdb"
    return db, seed(db)


@pytest.fixture(scope="module")
def server(seeded):
    yield from serve_dashboard(seeded[0])


@pytest.fixture
def page(browser):
    yield from checked_page(browser, 1300)  # the 1,300 px


def first_load(page, url: str) -> None:
    """Open the page and wait for the report's first draw only (nothing fetched after it)."""
    page.goto(url)
    page.wait_for_selector("#trials-table tbody tr")


def test_the_importance_panel_says_why_on_the_first_load(server, seeded, page):
    first_load(page, f"{server}/experiments/{seeded[1]['flagship']}")
    text = page.inner_text("#importance")  # no reload, no waiting for another request
    assert "HasAns_f1: needs 10 completed observations, has 6" in text
    assert "num_parameters: needs 10 completed observations, has 6" in text
    page.screenshot(path=screenshot_dir() / "first-visit-experiment.png", full_page=True)


def test_the_trials_table_fits_its_box_and_unfolds_inside_it(server, seeded, page):
    first_load(page, f"{server}/experiments/{seeded[1]['flagship']}")
    widths = page.evaluate("""() => ({table: document.getElementById('trials-table').getBoundingClientRect().width,
                                      box: document.getElementById('trials').clientWidth,
                                      page: document.documentElement.scrollWidth, window: window.innerWidth})""")
    assert widths["table"] <= widths["box"] and widths["page"] <= widths["window"], widths
    first_row = page.inner_text("#trials-table tbody tr:first-child")
    assert "n_layers=" in first_row and "learning_rate=" in first_row  # every parameter, on screen
    assert page.get_attribute("#trials-table tbody tr:nth-child(3) td.reason", "title") == LONG_REASON

    for group in ("parameters", "stored", "margins"):
        page.click(f"#trials button[data-group='{group}']")
    headers = page.eval_on_selector_all("#trials-table th", "cells => cells.map(c => c.dataset.key)")
    assert {"a:n_layers", "v:NoAns_exact", "a:learning_rate"} <= set(headers)
    unfolded = page.evaluate("""() => ({scroll: document.querySelector('#trials .scroll').scrollWidth,
                                        box: document.querySelector('#trials .scroll').clientWidth,
                                        page: document.documentElement.scrollWidth, window: window.innerWidth})""")
    assert unfolded["scroll"] > unfolded["box"]  # the card scrolls sideways ...
    assert unfolded["page"] <= unfolded["window"], unfolded  # ... never the page
    page.click("#trials button[data-group='parameters']")
    assert "a:n_layers" not in page.eval_on_selector_all("#trials-table th", "cells => cells.map(c => c.dataset.key)")


def test_one_number_format_across_hover_axis_and_table(server, seeded, page):
    first_load(page, f"{server}/experiments/{seeded[1]['flagship']}")
    page.wait_for_selector("#scatter .main-svg")
    hover = page.evaluate("""() => document.getElementById('scatter').data.filter(t => t.meta === 'frontier')[0]
                              .customdata.map(row => ({trial: row[1], size: row[4]}))""")
    cells = {int(row[0]): row[1] for row in page.eval_on_selector_all(
        "#trials-table tbody tr", "rows => rows.map(r => [r.children[0].textContent, "
        "r.querySelector('td:nth-child(4)').textContent])")}
    assert page.inner_text("#trials-table th:nth-child(4)") == "num_parameters"
    for point in hover:
        assert re.fullmatch(r"\d{2},\d{3},\d{3}", point["size"])  # 22,473,068: never 2.247e+7 or 22.47M
        assert cells[point["trial"]] == point["size"]
    ticks = page.eval_on_selector_all("#scatter .ytick text", "nodes => nodes.map(n => n.textContent)")
    assert ticks and all(re.fullmatch(r"[\d,]+", tick) for tick in ticks), ticks
    assert page.evaluate("paretune.fmt(22473068)") == format_number(22473068)


def test_trials_are_numbered_within_their_experiment(server, seeded, page):
    first_load(page, f"{server}/experiments/{seeded[1]['second']}")
    headers = page.eval_on_selector_all("#trials-table th", "cells => cells.map(c => c.textContent)")
    assert headers.count("trial") == 1 and "no." not in headers
    numbers = page.eval_on_selector_all("#trials-table tbody td:first-child", "cells => cells.map(c => c.textContent)")
    assert numbers == ["1", "2", "3"]  # its suggestions are 9, 10 and 11 of the file
    page.goto(server + page.get_attribute("#trials-table tbody tr:first-child a[href^='/runs/']", "href"))
    assert "(trial 1)" in page.inner_text("#run-metadata")  # not its suggestion id, 9
    page.goto(server + "/")
    assert re.search(r"\(max, trial [123]\)", page.inner_text(f"#experiments tr[data-experiment='{seeded[1]['second']}']"))


def test_the_page_and_paretune_list_use_one_state_word(server, seeded, page, capsys):
    finished = seeded[1]["finished"]
    first_load(page, f"{server}/experiments/{finished}")
    page.wait_for_function("() => document.getElementById('live').textContent.length > 0")
    badge = page.inner_text("#live")
    assert badge.split(" · ")[0] == "completed", badge
    assert cli(["--db", str(seeded[0]), "list"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if " finished " in f" {line} "]
    assert " completed " in f" {row} "
    page.goto(server + "/")
    assert "completed" in page.inner_text(f"#experiments tr[data-experiment='{finished}'] td:nth-child(3)")


def test_checkpoint_curves_are_lines(server, seeded, page):
    db, ids = seeded
    with paretune.open_experiment(ids["flagship"], db=str(db)).storage as store:
        run = next(r for r in store.list_runs(ids["flagship"]) if r.status == "completed")
    page.goto(f"{server}/runs/{run.id}")
    page.wait_for_selector("#checkpoints [data-metric='loss'] .main-svg")
    traces = page.evaluate("() => [...document.querySelectorAll('#checkpoints [data-metric]')]"
                           ".map(d => [d.dataset.metric, d.data[0].mode, d.data[0].x.length])")
    assert traces == [["HasAns_f1", "lines+markers", 3], ["loss", "lines+markers", 3]]
    line = page.get_attribute("#checkpoints [data-metric='loss'] path.js-line", "d")
    assert line and line.count("L") >= 2  # a drawn polyline through the three epochs, not dots
    ticks = page.eval_on_selector_all("#checkpoints [data-metric='loss'] .xtick text", "n => n.map(t => t.textContent)")
    assert ticks == ["1", "2", "3"]  # whole epochs, each once
    assert "(trial 1)" in page.inner_text("#run-metadata")
    page.screenshot(path=screenshot_dir() / "first-visit-run.png", full_page=True)

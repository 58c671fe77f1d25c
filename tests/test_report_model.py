"""The report model (storage/report.py) and parameter importance (paretune/importance.py)."""

import json

import numpy as np
import pytest

from paretune.optimizer import ExperimentSpec
from paretune.optimizer.pareto import hypervolume_2d
from paretune.cli import main as cli
from paretune.importance import MIN_OBSERVATIONS, metric_importances
from paretune.storage import DuckDBStorage, StorageError
from paretune.storage.report import (experiment_report, experiment_summary, format_number, frontier_points,
                            report_version)

SPEC = {
    "name": "Report Model",
    "parameters": [
        {"name": "width", "type": "double", "bounds": {"min": 1, "max": 1000}, "transformation": "log"},
        {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd"]},
    ],
    "metrics": [
        {"name": "accuracy", "objective": "maximize", "threshold": 0.5},
        {"name": "size", "objective": "minimize"},
        {"name": "latency", "objective": "minimize", "strategy": "constraint", "threshold": 10},
        {"name": "f1", "strategy": "store"},
    ],
    "observation_budget": 20,
}
# (label, values or a failure reason): statuses follow from the thresholds and the frontier by hand.
TRIALS = [
    ("a", {"accuracy": 0.9, "size": 100.0, "latency": 5.0, "f1": 0.91}),   # feasible, frontier
    ("b", {"accuracy": 0.8, "size": 50.0, "latency": 5.0, "f1": 0.8}),     # feasible, frontier
    ("c", {"accuracy": 0.7, "size": 120.0, "latency": 5.0, "f1": 0.7}),    # feasible, dominated by a
    ("d", {"accuracy": 0.95, "size": 30.0, "latency": 20.0, "f1": 0.9}),   # infeasible: latency misses by 10
    ("e", {"accuracy": 0.4, "size": 10.0, "latency": 1.0, "f1": 0.4}),     # infeasible: accuracy misses by 0.1
    ("f", "out_of_memory: needs 80 GiB"),                                  # failed
]


def add_trial(store, experiment_id, outcome, assignments=None):
    assignments = assignments or {"width": 10.0, "depth": 2, "optimizer": "adamw"}
    (suggestion,) = store.create_suggestions(experiment_id, [assignments])
    if isinstance(outcome, str):
        return store.record_observation(suggestion.id, failed=True, reason=outcome)
    return store.record_observation(suggestion.id, values=outcome, duration_s=1.5)


@pytest.fixture
def seeded(tmp_path):
    path = tmp_path / "report.duckdb"
    with DuckDBStorage(path) as store:
        experiment_id = store.create_experiment(ExperimentSpec.model_validate(SPEC)).id
        ids = {label: add_trial(store, experiment_id, outcome, {"width": 10.0 * (i + 1), "depth": i + 1,
                                                               "optimizer": "sgd" if i % 2 else "adamw"}).id
               for i, (label, outcome) in enumerate(TRIALS)}
    return path, experiment_id, ids


@pytest.mark.parametrize(("value", "text"), [
    (0.3935102667101142, "0.3935"), (71.23456, "71.23"), (22713216.0, "22,713,216"), (4, "4"), (3.0, "3"),
    (-0.5, "-0.5"), (0.1 + 0.2, "0.3"), (1.2346e-5, "1.235e-5"), (2.5e9 + 0.5, "2.5e9"), (123456.7, "123,457"),
    (999.99997, "1,000"), (1991.3, "1,991"), (-4321.5, "-4,322"), (1234.5678, "1,235"),
    (0.001, "0.001"), (None, ""), ("adamw", "adamw"), (True, "True"),
])
def test_numbers_are_rounded_to_what_a_person_reads(value, text):
    assert format_number(value) == text


def test_points_carry_status_values_margins_and_the_frontier(seeded):
    path, experiment_id, ids = seeded
    with DuckDBStorage(path, read_only=True) as store:
        report = experiment_report(store, experiment_id)
    by_label = {label: next(p for p in report.points if p.observation_id == ids[label]) for label in ids}
    assert {label: p.status for label, p in by_label.items()} == {
        "a": "feasible", "b": "feasible", "c": "feasible", "d": "infeasible", "e": "infeasible", "f": "failed"}
    assert [p.observation_id for p in report.frontier] == [ids["b"], ids["a"]]  # by accuracy
    assert by_label["d"].margins["latency"] == pytest.approx(-10.0)
    assert by_label["e"].margins["accuracy"] == pytest.approx(-0.1)
    assert by_label["a"].margins == pytest.approx({"accuracy": 0.4, "latency": 5.0})
    assert by_label["b"].assignments == {"width": 20.0, "depth": 2, "optimizer": "sgd"}
    assert by_label["f"].values == {} and by_label["f"].failure_reason == "out_of_memory: needs 80 GiB"
    assert [p.number for p in report.points] == [1, 2, 3, 4, 5, 6]
    # the step line turns at the corner both neighbours dominate (the worse value of each metric)
    assert report.staircase == ((0.8, 50.0), (0.8, 100.0), (0.9, 100.0))


def test_the_model_agrees_with_the_sql_views(seeded):
    path, experiment_id, _ = seeded
    with DuckDBStorage(path, read_only=True) as store:
        report = experiment_report(store, experiment_id)
        view_frontier = {r["observation_id"] for r in store.query("SELECT observation_id FROM pareto_frontier WHERE experiment_id = ?", [experiment_id])}
        view_checks = {(r["observation_id"], r["metric"]): r["meets"]
                       for r in store.query("SELECT * FROM threshold_checks WHERE experiment_id = ?", [experiment_id])}
        view_report = {r["observation_id"]: r["meets_all"] for r in store.threshold_report(experiment_id)}
        _, cli_frontier = frontier_points(store, experiment_id)
    assert {p.observation_id for p in report.frontier} == view_frontier
    assert cli_frontier == report.frontier
    model_checks = {(row.point.observation_id, check.metric): check.meets
                    for row in report.threshold_rows() for check in row.checks if row.point.status != "failed"}
    assert model_checks == view_checks
    assert {row.point.observation_id: row.meets_all for row in report.threshold_rows()} == view_report


def test_summary_budget_failures_and_best_values(seeded):
    path, experiment_id, ids = seeded
    with DuckDBStorage(path, read_only=True) as store:
        summary = experiment_summary(store, experiment_id)
        thresholds = {t.metric.name: t for t in experiment_report(store, experiment_id).thresholds}
    assert (summary.budget, summary.observations, summary.completed, summary.failed) == (20, 6, 5, 1)
    assert (summary.feasible, summary.infeasible, summary.remaining) == (3, 2, 14)
    assert summary.budget_used == "6 of 20 observations"
    assert summary.failures_by_kind == {"out_of_memory": 1}
    best = {b.metric: (b.value, b.observation_id) for b in summary.best}
    # only feasible observations count (d is more accurate and smaller, but misses latency); ties go to the earliest
    assert best == {"accuracy": (0.9, ids["a"]), "size": (50.0, ids["b"]), "latency": (5.0, ids["a"])}
    assert summary.last_activity is not None
    assert (thresholds["accuracy"].met, thresholds["accuracy"].violated) == (4, 1)
    assert thresholds["latency"].rule == "latency <= 10" and thresholds["latency"].violated == 1
    assert thresholds["accuracy"].best_margin == pytest.approx(0.45)


def test_hypervolume_history_matches_a_recomputation_on_every_prefix(tmp_path):
    rng = np.random.default_rng(3)
    with DuckDBStorage(tmp_path / "hv.duckdb") as store:
        experiment_id = store.create_experiment(ExperimentSpec.model_validate(SPEC)).id
        for _ in range(120):
            accuracy = float(rng.uniform(0.3, 1.0))
            size = float(rng.uniform(1, 100) * accuracy)
            add_trial(store, experiment_id, {"accuracy": accuracy, "size": size, "latency": float(rng.uniform(0, 12))})
        report = experiment_report(store, experiment_id)
    history = report.history
    assert history.kind == "hypervolume" and history.reference_source["accuracy"] == "threshold"
    reference = np.array([-history.reference["accuracy"], history.reference["size"]])
    value_at = dict((s.observations, s.value) for s in history.steps)
    current = 0.0
    for point in report.points:
        current = value_at.get(point.number, current)
        prefix = [(-p.values["accuracy"], p.values["size"]) for p in report.points[:point.number]
                  if p.status == "feasible"]
        expected = hypervolume_2d(np.array(prefix).reshape(-1, 2), reference)
        assert current == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert len(history.steps) >= 3


def test_one_optimized_metric_has_a_best_value_history(tmp_path):
    spec = dict(SPEC, name="single", metrics=[{"name": "loss", "objective": "minimize"}])
    with DuckDBStorage(tmp_path / "one.duckdb") as store:
        experiment_id = store.create_experiment(ExperimentSpec.model_validate(spec)).id
        for loss in [5.0, 7.0, 3.0, 3.0, 4.0, 1.0]:
            add_trial(store, experiment_id, {"loss": loss})
        report = experiment_report(store, experiment_id)
    assert report.history.kind == "best value"
    assert [(s.observations, s.value) for s in report.history.steps] == [(1, 5.0), (3, 3.0), (6, 1.0)]
    assert [p.values["loss"] for p in report.frontier] == [1.0] and report.staircase == ()


def test_the_version_changes_with_each_observation(seeded):
    path, experiment_id, _ = seeded
    with DuckDBStorage(path) as store:
        before = report_version(store, experiment_id)
        (suggestion,) = store.create_suggestions(experiment_id, [{"width": 5.0, "depth": 1, "optimizer": "sgd"}])
        opened = report_version(store, experiment_id)
        store.record_observation(suggestion.id, failed=True, reason="timeout")
        after = report_version(store, experiment_id)
        with pytest.raises(StorageError, match="no experiment 99"):
            report_version(store, 99)
    assert (before.open_suggestions, opened.open_suggestions, after.open_suggestions) == (0, 1, 0)
    assert len({before.token(), opened.token(), after.token()}) == 3 and after.observations == before.observations + 1


def test_cli_frontier_prints_the_model_rounded(seeded, capsys):
    path, experiment_id, ids = seeded
    assert cli(["--db", str(path), "frontier", str(experiment_id)]) == 0
    table = capsys.readouterr().out
    assert "2 frontier point(s), 6 observation(s), 1 failed" in table
    header, rule, *rows = table.splitlines()[1:]
    assert header.split() == ["trial", "run", "accuracy", "size", "latency", "f1", "width", "depth", "optimizer"]
    assert rows[1].split()[-7:-3] == ["0.9", "100", "5", "0.91"]
    assert any(row.split()[-3:] == ["20", "2", "sgd"] for row in rows)
    assert cli(["--db", str(path), "frontier", str(experiment_id), "--format", "json"]) == 0
    points = json.loads(capsys.readouterr().out)
    assert [p["observation_id"] for p in points] == [ids["b"], ids["a"]]
    assert points[1]["values"] == {"accuracy": 0.9, "size": 100.0, "latency": 5.0, "f1": 0.91}
    assert set(points[1]) == {"observation_id", "suggestion_id", "trial", "run_id", "values", "assignments"}
    assert points[1]["assignments"] == {"width": 10.0, "depth": 1, "optimizer": "adamw"}


# -- importance ---------------------------------------------------------------------------------
IMPORTANCE_SPEC = ExperimentSpec.model_validate({
    "name": "importance",
    "parameters": [
        {"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}},
        {"name": "y", "type": "double", "bounds": {"min": 1e-4, "max": 1}, "transformation": "log"},
        {"name": "unused", "type": "double", "bounds": {"min": 0, "max": 1}},
        {"name": "kind", "type": "categorical", "categorical_values": ["a", "b", "c"]},
    ],
    "metrics": [{"name": "f", "objective": "minimize"}, {"name": "g", "objective": "maximize"}],
})


def importance_data(n, seed=0):
    """Columns of assignments and values, as the report model holds them."""
    rng = np.random.default_rng(seed)
    assignments, values = {"x": [], "y": [], "unused": [], "kind": []}, {"f": [], "g": []}
    for _ in range(n):
        x, unused = rng.uniform(size=2)
        y = float(10 ** rng.uniform(-4, 0))
        kind = str(rng.choice(["a", "b", "c"]))
        for name, value in {"x": x, "y": y, "unused": unused, "kind": kind}.items():
            assignments[name].append(value)
        values["f"].append(3 * x ** 2 + 0.5 * np.log10(y))
        values["g"].append({"a": 0.0, "b": 1.0, "c": 2.0}[kind] + 0.05 * x)
    return assignments, values


def test_importance_finds_the_parameters_that_matter_and_not_the_one_that_does_not():
    results = {r.metric: r for r in metric_importances(IMPORTANCE_SPEC, *importance_data(150))}
    f, g = results["f"].importances, results["g"].importances
    assert sum(f.values()) == pytest.approx(1.0) and sum(g.values()) == pytest.approx(1.0)
    assert f["x"] > 0.4 and f["y"] > 0.1 and f["unused"] < 0.05 and f["kind"] < 0.05
    assert g["kind"] > 0.8 and g["unused"] < 0.05 and g["y"] < 0.05


def test_importance_subsamples_large_histories_and_says_why_when_it_cannot():
    large = metric_importances(IMPORTANCE_SPEC, *importance_data(3000))
    assert all(r.observations == 1000 and r.importances["unused"] < 0.05 for r in large)
    few = metric_importances(IMPORTANCE_SPEC, *importance_data(MIN_OBSERVATIONS - 1))
    assert all(r.importances is None and "needs 10 completed observations" in r.reason for r in few)

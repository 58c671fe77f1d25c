import itertools
import random

import duckdb
import pytest

from paretune.optimizer import ExperimentSpec
from paretune.storage import DuckDBStorage, StorageError
from paretune.storage.schema import SCHEMA_VERSION


def make_spec(metrics, name="exp"):
    return ExperimentSpec.model_validate({
        "name": name,
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
        "metrics": metrics,
        "observation_budget": 100,
    })


TWO_MAX = [{"name": "a"}, {"name": "b"}]


@pytest.fixture
def store(tmp_path):
    with DuckDBStorage(tmp_path / "store.duckdb") as opened:
        yield opened


def observe_all(store, spec, points, failed=()):
    """Record one observation per point (a dict of metric values); return suggestion ids in order."""
    with store.batch():
        experiment = store.create_experiment(spec)
        suggestions = store.create_suggestions(experiment.id,
                                               [{"x": i / (len(points) + 1)} for i in range(len(points))])
        for suggestion, values in zip(suggestions, points):
            if values in failed or values is None:
                store.record_observation(suggestion.id, failed=True, reason="out_of_memory")
            else:
                store.record_observation(suggestion.id, values=values)
    return experiment.id, [s.id for s in suggestions]


def raw_sql(store, sql):
    """Run SQL on the file behind paretune's back (the store does not hold it between calls)."""
    connection = duckdb.connect(store.path)
    try:
        connection.execute(sql)
    finally:
        connection.close()


def frontier_ids(store, experiment_id):
    return sorted(row["suggestion_id"] for row in view_frontier(store, experiment_id))


def view_frontier(store, experiment_id):
    """The `pareto_frontier` view's rows, as a user's SQL reads them."""
    return store.query("SELECT * FROM pareto_frontier WHERE experiment_id = ? ORDER BY value_1, observation_id",
                       [experiment_id])


def brute_force_frontier(spec, points):
    """O(n^2) reference: indices of feasible points no other feasible point dominates."""
    optimized = spec.optimized_metrics
    signs = [1 if m.objective == "maximize" else -1 for m in optimized]
    feasible = [i for i, p in enumerate(points) if p is not None and spec.meets_thresholds(p)]

    def score(i):
        return [s * points[i][m.name] for s, m in zip(signs, optimized)]

    def dominates(i, j):
        a, b = score(i), score(j)
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return sorted(i for i in feasible if not any(dominates(j, i) for j in feasible if j != i))


def test_two_metric_frontier_with_ties_and_dominated_points(store):
    points = [{"a": 1, "b": 5}, {"a": 3, "b": 3}, {"a": 5, "b": 1}, {"a": 2, "b": 2}, {"a": 3, "b": 3},
              {"a": 3, "b": 2}, {"a": 5, "b": 0}]
    experiment_id, ids = observe_all(store, make_spec(TWO_MAX), points)
    # (3,3) appears twice: identical points both stay; (3,2), (2,2), (5,0) are dominated.
    assert frontier_ids(store, experiment_id) == [ids[0], ids[1], ids[2], ids[4]]


def test_minimize_maximize_mix(store):
    spec = make_spec([{"name": "exact"}, {"name": "size", "objective": "minimize"}])
    points = [{"exact": 80, "size": 100}, {"exact": 70, "size": 50}, {"exact": 75, "size": 120}, {"exact": 60, "size": 50}]
    experiment_id, ids = observe_all(store, spec, points)
    assert frontier_ids(store, experiment_id) == [ids[0], ids[1]]


def test_one_metric_frontier_is_the_best_value_with_ties(store):
    spec = make_spec([{"name": "loss", "objective": "minimize"}, {"name": "f1", "strategy": "store"}])
    points = [{"loss": 0.3, "f1": 1}, {"loss": 0.1, "f1": 2}, {"loss": 0.2, "f1": 3}, {"loss": 0.1, "f1": 4}]
    experiment_id, ids = observe_all(store, spec, points)
    assert frontier_ids(store, experiment_id) == [ids[1], ids[3]]
    row = view_frontier(store, experiment_id)[0]
    assert row["metric_1"] == "loss" and row["metric_2"] is None and row["value_2"] is None


def test_thresholds_and_constraints_exclude_points(store):
    spec = make_spec([
        {"name": "exact", "threshold": 50},
        {"name": "size", "objective": "minimize"},
        {"name": "latency", "objective": "minimize", "strategy": "constraint", "threshold": 20},
    ])
    points = [
        {"exact": 40, "size": 1, "latency": 1},     # below the exact threshold: excluded though smallest
        {"exact": 90, "size": 50, "latency": 30},   # violates the latency constraint: excluded though best
        {"exact": 60, "size": 10, "latency": 20},   # meets both (threshold is inclusive)
        {"exact": 70, "size": 20, "latency": 5},
        {"exact": 65, "size": 30, "latency": 5},    # dominated by the previous point
    ]
    experiment_id, ids = observe_all(store, spec, points)
    assert frontier_ids(store, experiment_id) == [ids[2], ids[3]]
    report = {row["suggestion_id"]: row for row in store.threshold_report(experiment_id)}
    assert report[ids[0]]["meets_all"] is False and report[ids[0]]["violated"] == ["exact"]
    assert report[ids[1]]["violated"] == ["latency"] and report[ids[1]]["met"] == ["exact"]
    assert report[ids[2]]["meets_all"] is True and report[ids[2]]["met"] == ["exact", "latency"]


def test_failed_observations_are_excluded_and_reported(store):
    points = [{"a": 1, "b": 1}, None, {"a": 0, "b": 0}]
    experiment_id, ids = observe_all(store, make_spec(TWO_MAX), points)
    assert frontier_ids(store, experiment_id) == [ids[0]]
    report = {row["suggestion_id"]: row for row in store.threshold_report(experiment_id)}
    assert report[ids[1]]["failed"] is True and report[ids[1]]["meets_all"] is False
    assert report[ids[1]]["failure_reason"] == "out_of_memory"
    progress = store.progress(experiment_id)
    assert (progress.observations, progress.completed, progress.failed) == (3, 2, 1)
    assert progress.failures_by_reason == {"out_of_memory": 1}


def test_experiments_do_not_share_frontiers(store):
    first, first_ids = observe_all(store, make_spec(TWO_MAX, "one"), [{"a": 1, "b": 1}])
    second, second_ids = observe_all(store, make_spec(TWO_MAX, "two"), [{"a": 9, "b": 9}])
    assert frontier_ids(store, first) == first_ids and frontier_ids(store, second) == second_ids


@pytest.mark.parametrize("seed", range(4))
def test_frontier_view_matches_brute_force_on_random_data(store, seed):
    rng = random.Random(seed)
    spec = make_spec([
        {"name": "a", "threshold": 2.0},
        {"name": "b", "objective": "minimize"},
        {"name": "c", "objective": "minimize", "strategy": "constraint", "threshold": 8.0},
    ])
    # Coarse values so ties are common.
    points = [None if rng.random() < 0.1 else {"a": rng.randint(0, 10), "b": rng.randint(0, 10), "c": rng.randint(0, 10)}
              for _ in range(150)]
    experiment_id, ids = observe_all(store, spec, points)
    expected = [ids[i] for i in brute_force_frontier(spec, points)]
    assert frontier_ids(store, experiment_id) == expected


def test_query_columns_answers_the_rows_column_by_column(store):
    experiment_id, ids = observe_all(store, make_spec(TWO_MAX), [{"a": 1.0, "b": 2.5}, None, {"a": 3.0, "b": 0.5}])
    sql = ("SELECT o.suggestion_id, o.failed, o.failure_reason, v.value FROM observations o "
           "LEFT JOIN observation_values v ON v.observation_id = o.id AND v.metric = 'a' "
           "WHERE o.experiment_id = ? ORDER BY o.id")
    columns = store.query_columns(sql, [experiment_id])
    rows = store.query(sql, [experiment_id])
    assert columns == {name: [row[name] for row in rows] for name in rows[0]}  # the same answer as query
    assert columns["value"] == [1.0, None, 3.0] and columns["failure_reason"] == [None, "out_of_memory", None]
    assert [type(v) for v in columns["suggestion_id"] + columns["failed"]] == [int] * 3 + [bool] * 3
    assert store.query_columns(sql, [experiment_id + 1]) == {name: [] for name in rows[0]}


def test_nan_and_infinite_values_are_refused_and_nothing_is_written(store):
    experiment = store.create_experiment(make_spec(TWO_MAX))
    (suggestion,) = store.create_suggestions(experiment.id, [{"x": 0.5}])
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(StorageError, match="not finite"):
            store.record_observation(suggestion.id, values={"a": bad, "b": 1.0})
    assert store.get_suggestion(suggestion.id).state == "open"
    assert store.query("SELECT count(*) AS n FROM observations")[0]["n"] == 0
    assert store.query("SELECT count(*) AS n FROM observation_values")[0]["n"] == 0


def test_the_database_itself_refuses_non_finite_values(store):
    run = store.create_run("baseline")
    with pytest.raises(duckdb.ConstraintException):
        raw_sql(store, f"INSERT INTO checkpoints (run_id, epoch, metric, value) VALUES ({run.id}, 0, 'loss', 'nan'::DOUBLE)")


def test_a_batch_of_suggestions_is_all_or_nothing(store):
    experiment = store.create_experiment(make_spec(TWO_MAX))
    with pytest.raises(StorageError, match="assignments.x"):
        store.create_suggestions(experiment.id, [{"x": 0.1}, {"x": 0.2}, {"x": 7.0}])
    assert store.list_suggestions(experiment.id) == []


def test_failed_transaction_rolls_back(store):
    experiment = store.create_experiment(make_spec(TWO_MAX))
    (suggestion,) = store.create_suggestions(experiment.id, [{"x": 0.5}])
    raw_sql(store, f"INSERT INTO observations (experiment_id, suggestion_id) VALUES ({experiment.id}, {suggestion.id})")
    with pytest.raises(duckdb.ConstraintException):
        store.record_observation(suggestion.id, values={"a": 1.0, "b": 1.0})
    # The suggestion update inside the failed transaction was rolled back with it.
    assert store.get_suggestion(suggestion.id).state == "open"
    assert store.query("SELECT count(*) AS n FROM observation_values")[0]["n"] == 0


def test_expire_open_suggestions_closes_their_runs(store):
    experiment = store.create_experiment(make_spec(TWO_MAX))
    suggestions = store.create_suggestions(experiment.id, [{"x": 0.1}, {"x": 0.2}])
    run = store.create_run("trial", experiment_id=experiment.id, suggestion_id=suggestions[0].id)
    store.record_observation(suggestions[1].id, values={"a": 1.0, "b": 1.0})
    assert store.expire_open_suggestions(experiment.id) == [suggestions[0].id]
    assert store.get_suggestion(suggestions[0].id).state == "expired"
    assert store.get_run(run.id).status == "failed"
    with pytest.raises(StorageError, match="expired, not open"):
        store.record_observation(suggestions[0].id, values={"a": 1.0, "b": 1.0})


def test_runs_metrics_and_checkpoints(store):
    run = store.create_run("baseline", parameters={"lr": 0.1}, host="h", device="cpu")
    store.log_run_parameters(run.id, {"layers": 6})
    store.log_run_metrics(run.id, {"f1": 0.5})
    store.log_run_metrics(run.id, {"f1": 0.6, "exact": 0.4})
    store.add_checkpoint(run.id, 1, {"loss": 2.0, "f1": 0.3})
    store.add_checkpoint(run.id, 2, {"loss": 1.0})
    with pytest.raises(StorageError, match="loss: nan is not finite"):
        store.add_checkpoint(run.id, 3, {"loss": float("nan")})
    store.finish_run(run.id, "completed")
    record = store.get_run(run.id)
    assert record.parameters == {"lr": 0.1, "layers": 6}
    assert record.metrics == {"f1": 0.6, "exact": 0.4}
    assert record.status == "completed" and record.ended_at is not None
    assert store.checkpoints(run.id) == [{"epoch": 1, "values": {"f1": 0.3, "loss": 2.0}},
                                         {"epoch": 2, "values": {"loss": 1.0}}]
    with pytest.raises(StorageError, match="finished run"):
        store.log_run_metrics(run.id, {"f1": 1.0})


def test_experiments_by_id_or_name_and_state(store):
    older = store.create_experiment(make_spec(TWO_MAX, "same"))
    with pytest.raises(StorageError, match=f"named 'same' already exists .*id {older.id}.*allow a duplicate"):
        store.create_experiment(make_spec(TWO_MAX, "same"))
    newer = store.create_experiment(make_spec(TWO_MAX, "same"), allow_duplicate_name=True)
    assert store.get_experiment("same").id == newer.id
    assert store.get_experiment(str(older.id)).id == older.id
    store.set_experiment_state(older.id, "completed")
    assert store.get_experiment(older.id).state == "completed"
    with pytest.raises(StorageError, match="state must be one of"):
        store.set_experiment_state(older.id, "done")
    with pytest.raises(StorageError, match="no experiment"):
        store.get_experiment("missing")


def test_schema_is_versioned_and_migrations_run_once(tmp_path):
    path = tmp_path / "versioned.duckdb"
    with DuckDBStorage(path) as store:
        store.create_experiment(make_spec(TWO_MAX))
    with DuckDBStorage(path) as reopened:
        versions = reopened.query("SELECT version FROM paretune_schema ORDER BY version")
    assert [row["version"] for row in versions] == list(range(1, SCHEMA_VERSION + 1))
    connection = duckdb.connect(str(path))
    connection.execute("INSERT INTO paretune_schema (version) VALUES (?)", [SCHEMA_VERSION + 1])
    connection.close()
    for read_only in (False, True):
        with pytest.raises(StorageError, match="upgrade paretune"):
            DuckDBStorage(path, read_only=read_only)


def test_pairwise_brute_force_helper_is_itself_right():
    spec = make_spec(TWO_MAX)
    points = [{"a": a, "b": b} for a, b in itertools.product(range(3), range(3))]
    assert brute_force_frontier(spec, points) == [8]

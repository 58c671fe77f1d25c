"""Properties of `suggest` that could fail: types and bounds, determinism, pending points,
failure regions, thresholds, and beating random search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paretune.optimizer import ExperimentSpec, Observation, ObservationError, suggest, validate_history
from paretune.optimizer.history import History, ways_without_full_result
from paretune.optimizer.space import SearchSpace

MIXED = ExperimentSpec.model_validate({
    "name": "mixed",
    "parameters": [
        {"name": "lr", "type": "double", "bounds": {"min": 1e-5, "max": 1e-1}, "transformation": "log"},
        {"name": "dropout", "type": "double", "bounds": {"min": 0.0, "max": 0.5}},
        {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 6}},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd", "lion"]},
        {"name": "warmup", "type": "int", "bounds": {"min": 0, "max": 3}, "tunable": False, "default_value": 2},
    ],
    "metrics": [
        {"name": "acc", "objective": "maximize", "threshold": 0.2},
        {"name": "size", "objective": "minimize"},
        {"name": "latency", "objective": "minimize", "strategy": "constraint", "threshold": 5.0},
    ],
})


def mixed_values(a: dict) -> dict[str, float] | None:
    if a["optimizer"] == "sgd" and a["lr"] > 1e-2:
        return None
    acc = 1.0 - (math.log10(a["lr"]) + 3) ** 2 / 4 - (a["dropout"] - 0.1) ** 2 + 0.05 * a["layers"]
    return {"acc": acc, "size": float(a["layers"]), "latency": a["layers"] * (1.5 if a["optimizer"] == "lion" else 1.0)}


def run(spec, evaluate, budget, seed, **options):
    history: list[Observation] = []
    for step in range(budget):
        [assignments] = suggest(spec, history, [], 1, seed=seed * 1000 + step, **options)
        values = evaluate(assignments)
        history.append(Observation(assignments=assignments, values=values, failed=values is None))
    return history


def check_assignment(spec: ExperimentSpec, assignments: dict) -> None:
    assert set(assignments) == {p.name for p in spec.parameters}
    for p in spec.parameters:
        value = assignments[p.name]
        if p.type == "categorical":
            assert type(value) is str and value in p.categorical_values
        elif p.type == "int":
            assert type(value) is int and p.bounds.min <= value <= p.bounds.max
        else:
            assert type(value) is float and p.bounds.min <= value <= p.bounds.max


def test_assignments_in_bounds_and_typed_through_startup_and_model_phases():
    history = run(MIXED, mixed_values, 30, seed=1)
    batch = suggest(MIXED, history, [], 4, seed=2)
    for assignments in [o.assignments for o in history] + batch:
        check_assignment(MIXED, assignments)
        assert assignments["warmup"] == 2  # not tunable: keeps its default


def test_same_seed_same_suggestions_and_different_seed_differs():
    history = run(MIXED, mixed_values, 20, seed=3)
    assert suggest(MIXED, history, [], 3, seed=7) == suggest(MIXED, history, [], 3, seed=7)
    assert suggest(MIXED, history, [], 3, seed=7) != suggest(MIXED, history, [], 3, seed=8)


def test_defaults_are_tried_first():
    spec = ExperimentSpec.model_validate({
        "name": "d", "metrics": [{"name": "y"}],
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}, "default_value": 0.25},
                       {"name": "k", "type": "categorical", "categorical_values": ["a", "b"], "default_value": "b"}]})
    [first] = suggest(spec, [], [], seed=0)
    assert (first["x"], first["k"]) == (0.25, "b")
    [second] = suggest(spec, [Observation(assignments=first, values={"y": 1.0})], [], seed=0)
    assert (second["x"], second["k"]) != (0.25, "b")


def test_a_box_of_doubles_starts_evenly_and_the_same_one_by_one_or_as_a_batch():
    spec = ExperimentSpec.model_validate({
        "name": "box", "metrics": [{"name": "y"}],
        "parameters": [{"name": "lr", "type": "double", "bounds": {"min": 1e-5, "max": 1e-1}, "transformation": "log"},
                       *({"name": f"x{i}", "type": "double", "bounds": {"min": -1, "max": 3}} for i in range(4))]})
    space = SearchSpace(spec)
    history: list[Observation] = []
    for step in range(16):
        [assignments] = suggest(spec, history, [], seed=step, n_startup=16)
        history.append(Observation(assignments=assignments, values={"y": 0.0}))
    units = space.encode_many([o.assignments for o in history])
    for axis in units.T:  # one point in every sixteenth of every axis: no corner or centre crowds
        assert sorted(np.floor(axis * 16 + 1e-9).astype(int)) == list(range(16))
    batch = suggest(spec, history[:1], [], 15, seed=99, n_startup=16)
    assert batch == [o.assignments for o in history[1:]]
    # a suggestion abandoned while a later one is pending: the next must not repeat the pending one
    abandoned, pending = suggest(spec, history[:5], [], 2, seed=0, n_startup=16)
    [after] = suggest(spec, history[:5], [pending], seed=0, n_startup=16)
    assert after != pending and after not in [o.assignments for o in history[:5]]
    # a lost suggestion (expired with a killed process): its point is not issued again
    [lost] = suggest(spec, history[:5], [], seed=0, n_startup=16)
    [next_one] = suggest(spec, history[:5], [], seed=0, n_startup=16, issued=6)
    assert lost == history[5].assignments and next_one == history[6].assignments


def test_pending_and_batch_points_are_not_repeated():
    spec = ExperimentSpec.model_validate({
        "name": "small", "metrics": [{"name": "y", "objective": "minimize"}],
        "parameters": [{"name": "a", "type": "int", "bounds": {"min": 0, "max": 3}},
                       {"name": "b", "type": "categorical", "categorical_values": ["p", "q", "r"]}]})
    history = run(spec, lambda a: {"y": (a["a"] - 2) ** 2 + (a["b"] != "q")}, 5, seed=0)
    pending = suggest(spec, history, [], 3, seed=1)
    batch = suggest(spec, history, pending, 3, seed=2)
    seen = [tuple(sorted(o.assignments.items())) for o in history] + [tuple(sorted(a.items())) for a in pending]
    keys = [tuple(sorted(a.items())) for a in batch]
    assert len(set(keys)) == 3 and not set(keys) & set(seen)


def test_failure_region_is_avoided_once_observed():
    spec = ExperimentSpec.model_validate({
        "name": "fail", "metrics": [{"name": "y", "objective": "minimize"}],
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}]})
    # the optimum sits next to the failure region, which a search that ignores failures spills into
    rates = []
    for seed in range(3):
        history = run(spec, lambda a: None if a["x"] > 0.7 else {"y": (a["x"] - 0.65) ** 2}, 40, seed=seed)
        rates.append(np.mean([o.failed for o in history[15:]]))
    assert np.mean(rates) < 0.5 * 0.3  # random search fails 30% of the time


def test_optimized_threshold_shifts_suggestions_into_the_region_of_interest():
    def spec_with(threshold):
        metric = {"name": "f2", "objective": "minimize"} | ({"threshold": threshold} if threshold else {})
        return ExperimentSpec.model_validate({
            "name": "t", "metrics": [{"name": "f1", "objective": "minimize"}, metric],
            "parameters": [{"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}} for i in range(3)]})

    def evaluate(a):
        g = 1 + a["x1"] + a["x2"]
        return {"f1": a["x0"], "f2": g * (1 - math.sqrt(a["x0"] / g))}

    shift = []
    for seed in range(3):
        free = run(spec_with(None), evaluate, 40, seed)
        bounded = run(spec_with(0.3), evaluate, 40, seed)
        shift.append(np.mean([o.assignments["x0"] for o in bounded[15:]])
                     - np.mean([o.assignments["x0"] for o in free[15:]]))
    assert np.mean(shift) > 0.1  # f2 <= 0.3 needs x0 large: suggestions move there


def test_single_metric_tpe_beats_random_search():
    spec = ExperimentSpec.model_validate({
        "name": "sphere", "metrics": [{"name": "y", "objective": "minimize"}],
        "parameters": [{"name": f"x{i}", "type": "double", "bounds": {"min": -5, "max": 5}} for i in range(4)]})

    def sphere(a):
        return {"y": sum((a[f"x{i}"] - 1.0) ** 2 for i in range(4))}

    tpe_best, random_best = [], []
    for seed in range(8):
        tpe_best.append(min(o.values["y"] for o in run(spec, sphere, 50, seed)))
        random_best.append(min(o.values["y"] for o in run(spec, sphere, 50, seed, n_startup=50)))
    # hyperopt's own fmin(tpe.suggest) lands near 0.5-0.7x random's median here at 50 trials
    assert np.median(tpe_best) < 0.7 * np.median(random_best)


@pytest.mark.parametrize("bad, message", [
    ({"assignments": {"lr": 1e-3, "dropout": 0.1, "layers": 2, "optimizer": "sgd", "warmup": 2, "extra": 1},
      "values": {"acc": 0.5, "size": 2.0, "latency": 1.0}}, "no such parameter"),
    ({"assignments": {"lr": 1.0, "dropout": 0.1, "layers": 2, "optimizer": "sgd", "warmup": 2},
      "values": {"acc": 0.5, "size": 2.0, "latency": 1.0}}, "outside bounds"),
    ({"assignments": {"lr": 1e-3, "dropout": 0.1, "layers": 2, "optimizer": "sgd", "warmup": 2},
      "values": {"acc": 0.5, "latency": 1.0}}, "size: missing"),
])
def test_history_that_does_not_match_the_spec_is_an_error(bad, message):
    with pytest.raises(ObservationError, match=message):
        suggest(MIXED, [Observation(**bad)], [], seed=0)


def test_pending_outside_bounds_is_an_error():
    pending = {"lr": 1e-3, "dropout": 0.9, "layers": 2, "optimizer": "sgd", "warmup": 2}
    with pytest.raises(ObservationError, match="outside bounds"):
        suggest(MIXED, [], [pending], seed=0)


GOOD = [Observation(assignments={"lr": 1e-3, "dropout": 0.1, "layers": layers, "optimizer": "sgd", "warmup": 2},
                    values={"acc": 0.5, "size": float(layers), "latency": 1.0}) for layers in (1, 2, 3)]


@pytest.mark.parametrize("assignments, values, message", [
    ({"lr": 1e-3, "dropout": 0.1, "depth": 2, "optimizer": "sgd", "warmup": 2}, None, "no such parameter"),
    ({"lr": 1e-3, "dropout": 0.1, "layers": 2.5, "optimizer": "sgd", "warmup": 2}, None, "layers"),
    ({"lr": 1e-3, "dropout": "0.1", "layers": 2, "optimizer": "sgd", "warmup": 2}, None, "dropout"),
    ({"lr": 1e-3, "dropout": 0.1, "layers": 2, "optimizer": "adam", "warmup": 2}, None, "optimizer"),
    (None, {"acc": 0.5, "size": 2.0, "latency": 1.0, "memory": 3.0}, "no such metric"),
    (None, {"acc": 0.5, "size": 2.0, "lat": 1.0}, "latency: missing"),
])
def test_the_column_wise_check_sends_every_bad_observation_to_the_one_by_one_checks(assignments, values, message):
    """The fast path (`observation._conforms`, columns and lengths) lets nothing through that the
    per-observation checks refuse: each bad entry, last in a good history, is named by index."""
    bad = Observation(assignments=assignments or GOOD[0].assignments, values=values or GOOD[0].values)
    with pytest.raises(ObservationError, match=rf"history\[3\]: .*{message}"):
        validate_history(MIXED, [*GOOD, bad])


def test_the_column_wise_check_encodes_as_the_one_by_one_path():
    """Columns from the fast path (numbers as float arrays, a store metric beside the required
    ones) give the same rows and metric table as encoding each observation."""
    spec = ExperimentSpec.model_validate(MIXED.model_dump(exclude_none=True) | {
        "metrics": [*MIXED.model_dump(exclude_none=True)["metrics"], {"name": "memory", "strategy": "store"}]})
    history = [*GOOD, Observation(assignments=GOOD[0].assignments, failed=True),
               Observation(assignments=GOOD[1].assignments, values={**GOOD[1].values, "memory": 7.0})]
    columns = validate_history(spec, history)
    assert columns is not None and isinstance(columns["lr"], np.ndarray)
    fast, slow = (History.build(spec, SearchSpace(spec), history, given) for given in (columns, None))
    np.testing.assert_array_equal(fast.rows, slow.rows)
    np.testing.assert_array_equal(fast.objectives, slow.objectives)
    np.testing.assert_array_equal(fast.tiers, slow.tiers)


def test_categoricals_of_numbers_are_ordinal_to_the_gaussian_processes_by_value():
    """Widths listed out of order are read at their value's rank; words, two numbers, and an
    inactive entry keep the unordered (or apart) encoding; the Parzen rows keep the index."""
    spec = ExperimentSpec.model_validate({
        "name": "ordinal",
        "parameters": [
            {"name": "hidden", "type": "categorical", "categorical_values": ["512", "128", "256", "1024"]},
            {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd", "lion"]},
            {"name": "precision", "type": "categorical", "categorical_values": ["16", "32"]},
            {"name": "batch", "type": "categorical", "categorical_values": ["8", "16", "32"],
             "conditions": {"branch": "tuned"}},
            {"name": "lr", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
        ],
        "conditionals": [{"name": "branch", "values": ["default", "tuned"]}],
        "metrics": [{"name": "acc", "objective": "maximize"}],
    })
    space = SearchSpace(spec)
    rows = space.encode_many([
        {"hidden": "1024", "optimizer": "lion", "precision": "32", "batch": "16", "lr": 0.25, "branch": "tuned"},
        {"hidden": "128", "optimizer": "sgd", "precision": "16", "lr": 0.5, "branch": "default"},
    ])
    np.testing.assert_array_equal(rows[:, 0], [3.0, 1.0])  # the index, as the Parzen estimators read it
    np.testing.assert_allclose(space.surrogate_rows(rows), [[1.0, 2.0, 1.0, 0.5, 0.25, 1.0],
                                                            [0.0, 1.0, 0.0, -1.0, 0.5, 0.0]])
    assert space.ordinal.tolist() == [True, False, False, True, False, False]
    data = History.build(spec, space, [Observation(assignments=space.decode(row), values={"acc": 0.5}) for row in rows])
    np.testing.assert_allclose(data.inputs(rows), space.surrogate_rows(rows))
    assert data.input_continuous.tolist() == [False, False, False, False, True, False]  # still categorical kernels


def test_an_ordinal_axis_sits_in_the_kernels_categorical_part_at_squared_place_distances():
    """Neighbouring places are nearer than far ones; the mixed kernel keeps its categorical
    part (the per-value offsets); `kernel_between` agrees with the per-axis kernel."""
    from paretune.optimizer.gp import SearchKernel, axis_distances, kernel_between

    rows = np.array([[0.0, 0.2, 0.0], [1 / 3, 0.2, 0.0], [1.0, 0.2, 0.0], [0.0, 0.7, 1.0]])
    continuous, ordinal = np.array([False, True, False]), np.array([True, False, False])
    lengthscales = np.array([0.5, 0.3, 0.8])
    kernel = kernel_between(rows, rows, lengthscales, continuous, ordinal)
    assert kernel[0, 1] > kernel[0, 2]  # place 1/3 is nearer place 0 than place 1 is
    unordered = kernel_between(rows * [3, 1, 1], rows * [3, 1, 1], lengthscales, continuous)
    assert unordered[0, 1] == pytest.approx(unordered[0, 2])  # a mismatch is a mismatch
    per_axis = SearchKernel(axis_distances(rows, rows, continuous, ordinal), continuous)(lengthscales)
    np.testing.assert_allclose(kernel, per_axis, atol=1e-12)


def test_each_failure_kind_is_one_way_without_a_full_result_and_details_never_split_one():
    """A failure's kind is read from its reason as every front end writes it (`paretune.failures`);
    free text and no reason are "failed". Each kind is told by its own failures and the
    observations that did not fail; a stopped trial is a way of its own, told by every
    observation that did not fail."""
    spec = ExperimentSpec.model_validate({
        "name": "kinds", "metrics": [{"name": "y", "objective": "minimize"}, {"name": "z", "objective": "minimize"}],
        "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}]})
    ends = [("out_of_memory: 3.2 GiB", None), ("out_of_memory", None), ("diverged: loss is nan", None),
            ("the node rebooted", None), (None, None), (None, 1.0), (None, 0.5)]
    history = [Observation(assignments={"x": i / 10}, failed=fidelity is None, failure_reason=reason,
                           values=None if fidelity is None else {"y": 1.0, "z": 2.0}, fidelity=fidelity or 1.0)
               for i, (reason, fidelity) in enumerate(ends)]
    data = History.build(spec, SearchSpace(spec), history)
    assert data.failure_kinds.tolist() == ["out_of_memory", "out_of_memory", "diverged", "failed", "failed", "", ""]
    ways = [(ended.nonzero()[0].tolist(), told.nonzero()[0].tolist()) for ended, told in ways_without_full_result(data)]
    assert ways == [([2], [2, 5, 6]), ([3, 4], [3, 4, 5, 6]), ([0, 1], [0, 1, 5, 6]), ([6], [5, 6])]


def test_failures_of_one_kind_suggest_as_failures_without_a_reason():
    """Free-text reasons are one kind ("failed"): the suggestions are those of failures
    reported with no reason at all, whatever the text."""
    plain = run(MIXED, mixed_values, 30, seed=3)
    assert any(o.failed for o in plain)
    worded = [o.model_copy(update={"failure_reason": f"crash {i}"}) if o.failed else o for i, o in enumerate(plain)]
    assert suggest(MIXED, worded, [], 4, seed=11) == suggest(MIXED, plain, [], 4, seed=11)

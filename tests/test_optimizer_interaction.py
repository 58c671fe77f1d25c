"""The interaction problem (`deep_lr`, benchmarks/problems_interactions.py): the best learning
rate falls steeply with depth, and the deep, wide students that make the frontier's accurate
end run out of memory at large batches. A fixed seed must reach that end within the budget.

Seed 376 since the nineteenth round, one of the fresh seeds that confirmed its change (failed
trials' plausible values in the hypervolume's reference): it reaches the accurate end by trial
32 (by trial 60 before). Seed 33, the seed from the fifteenth round to the eighteenth, ends at
74.8 on the new path (a 12-head x 8 student at batch 64); 101 of 120 seeds reach the end
(benchmarks/RESULTS.md, "nineteenth round"). (Seed 33 had been chosen when the best points'
moves up their trend, `suggest._along_trends`, lifted it from 75.8 to 77.8; seed 27, the ninth
round's, when that round's search lost it at 74.4.) Deterministic: the same seeds as
`benchmarks/optimizer_quality`'s sequential mode, so the benchmark's seed 376 is this run.

`wide_lr` is the same problem with the width as a categorical of numbers ("128" to "1024"):
read unordered, a width tried only at a narrow student's learning rate was condemned whole;
read in order (`SearchSpace.surrogate_rows`), what was learned at one width carries to the next.

DTLZ2 and `pipeline` lost their fronts the same way in some seeds, a region condemned because
it was seen only with poor settings of the other axes, until the optimistic steps.
"""

from __future__ import annotations

import numpy as np

from benchmarks.problems import PROBLEMS
from benchmarks.problems_interactions import _best_log_lr
from paretune.optimizer import ExperimentSpec, Observation, propose
from paretune.optimizer.gp import GaussianProcess
from paretune.optimizer.history import FAILED, History, frontier_ranks
from paretune.optimizer.space import SearchSpace
from paretune.optimizer.suggest import _plausible_where_failed, _reference_point

BUDGET = 100
SEED = 376
SIZE_LIMIT = 200.0  # the benchmark's reference size (millions of parameters): past it nothing counts
ACCURATE_END = 76.0  # within 2.5 points of the best exact any student within SIZE_LIMIT reaches (78.7)


def _sweep(name: str, seed: int) -> list[tuple[dict, dict | None]]:
    """`optimizer_quality`'s sequential run: one suggestion at a time, its seeds and noise, each
    failure with its kind."""
    problem = PROBLEMS[name]
    spec = ExperimentSpec.model_validate(problem.spec)
    noise = np.random.default_rng([seed, 7])
    history: list[Observation] = []
    for asked in range(BUDGET):
        [proposal] = propose(spec, history, [], 1, seed=seed * 100_003 + asked)
        values = problem.observe(proposal.assignments, noise, proposal.task)
        failed = values is None
        reason = problem.failure_reason(proposal.assignments) if failed and problem.failure_reason else None
        history.append(Observation(assignments=proposal.assignments, values=values, failed=failed, failure_reason=reason))
    return [(o.assignments, problem.true_values(o.assignments)) for o in history]


def test_the_reference_front_has_an_accurate_end_past_the_threshold_for_narrow_students():
    front = PROBLEMS["deep_lr"].reference_front()
    within = front[front[:, 1] <= SIZE_LIMIT]
    assert -within[:, 0].min() > 78.0  # reachable
    assert -front[np.argmin(front[:, 1]), 0] < 62.0  # the smallest students barely pass 60


def test_a_fixed_seed_reaches_the_accurate_end_of_the_interaction_problem():
    trials = _sweep("deep_lr", SEED)
    reached = [values["exact"] for _, values in trials
               if values is not None and values["exact"] >= 60.0 and values["num_parameters"] <= SIZE_LIMIT]
    assert max(reached) >= ACCURATE_END
    deep = [a for a, values in trials if values is not None and values["exact"] >= ACCURATE_END]
    assert all(a["batch_size"] != "64" for a in deep)  # reached by moving the batch with the architecture


def test_wide_students_are_trained_at_their_own_learning_rate_in_a_seed_that_stayed_narrow():
    """The benchmark's seed 13 of `wide_lr` ended at exact 72.0 within the size limit while
    the hidden size was an unordered categorical: none of its eight students of width 768 or
    1024 had both a learning rate near the 1e-5 those widths need and a good student's other
    settings (the best of them scored 56)."""
    trials = _sweep("wide_lr", 13)
    accurate = [a for a, values in trials
                if values is not None and values["exact"] >= ACCURATE_END and values["num_parameters"] <= SIZE_LIMIT]
    assert accurate
    assert all(int(a["hidden"]) >= 768 and a["learning_rate"] < 3e-5 for a in accurate)


def test_dtlz2s_front_is_found_between_its_corners_in_a_seed_that_kept_only_the_corners():
    """DTLZ2: f = (1 + g) (cos, sin)(x0 pi / 2), g the distance of x1-x5 from 0.5. In the
    benchmark's seed 11 the search ended with the two corners (x0 = 0 and 1, g near 0) and
    nothing between: the middle had been seen only at random g, so the best corner with x0
    moved to the middle read about (1.1, 1.1) where it is (0.71, 0.71). The optimistic steps
    test that doubt, and the middle of the front is then followed."""
    trials = _sweep("dtlz2", 11)
    middle = [a for a, values in trials[-40:] if 0.2 <= a["x0"] <= 0.8
              and sum((a[f"x{i}"] - 0.5) ** 2 for i in range(1, 6)) < 0.02]
    assert len(middle) >= 5


def test_pipelines_front_is_found_in_a_seed_that_lost_most_of_it():
    """`pipeline` (a ZDT1-shaped front over a depth, a kernel and a log scale, with a cost
    constraint and a threshold): the benchmark's seed 2 ended with 0.37 of the true front's
    hypervolume before the optimistic steps."""
    trials = _sweep("pipeline", 2)
    assert PROBLEMS["pipeline"].hypervolume_fraction([a for a, _ in trials]) > 0.9


def test_a_width_is_not_condemned_for_failures_its_batch_size_and_learning_rate_explain():
    """The benchmark's seed 24 of `wide_lr` ended at exact 73.7 while one model read every
    failure alike: its 768-wide students had run out of memory at batch 64 and diverged at
    high learning rates, and that model read a 768-wide student at batch 16 and the learning
    rate it needs as 0.20 likely to give a result (it never fails). One model per failure kind
    (`ways_without_full_result`) tells the causes apart."""
    trials = _sweep("wide_lr", 24)
    accurate = [a for a, values in trials
                if values is not None and values["exact"] >= ACCURATE_END and values["num_parameters"] <= SIZE_LIMIT]
    assert accurate
    assert all(int(a["hidden"]) >= 768 for a in accurate)


def _student(width: str, layers: int, log_lr: float, batch: str = "32") -> dict:
    return {"hidden": width, "n_layers": layers, "learning_rate": float(10**log_lr), "batch_size": batch,
            "dropout": 0.1, "warmup": 0.08, "alpha_ce": 0.6}


def _history(problem_name: str, students: list[dict]) -> tuple[SearchSpace, History]:
    problem = PROBLEMS[problem_name]
    spec = ExperimentSpec.model_validate(problem.spec)
    space = SearchSpace(spec)
    history = [Observation(assignments=a, values=problem.true_values(a), failed=problem.true_values(a) is None,
                           failure_reason=None if problem.true_values(a) else problem.failure_reason(a))
               for a in students]
    return space, History.build(spec, space, history)


def _fit(data: History, metric: int) -> GaussianProcess:
    done = data.tiers != FAILED
    return GaussianProcess.fit(data.inputs(data.rows[done]), data.objectives[done, metric], data.input_continuous,
                               ordinal=data.input_ordinal, optional=data.input_optional,
                               replaceable=data.input_replaceable)


def test_a_region_whose_first_trials_failed_is_not_shut_out_of_the_hypervolume():
    """The size has no threshold, so its reference point sits a tenth of the range past the
    worst completed size. Where every wide student tried so far ran out of memory, that is the
    narrow students' size, and no wider candidate could gain, however accurate: the failed
    trials' plausible sizes (`_plausible_where_failed`) move it out; the accuracy's threshold
    stays the reference; without failures nothing changes."""
    rng = np.random.default_rng(0)
    narrow = [_student(w, layers := int(rng.integers(1, 7)), _best_log_lr("wide_lr", float(w), layers, 32.0))
              for w in ["128", "256", "384"] * 4]
    out_of_memory = [_student(w, int(rng.integers(6, 13)), -3.5, batch="64") for w in ["768", "1024"] * 3]
    _, data = _history("wide_lr", narrow + out_of_memory)
    assert np.count_nonzero(data.tiers == FAILED) == len(out_of_memory)
    plausible = _plausible_where_failed(data, [_fit(data, 0), _fit(data, 1)])
    completed_only, with_failures = _reference_point(data), _reference_point(data, plausible)
    largest_completed = np.nanmax(data.objectives[:, 1])
    assert plausible[:, 1].min() > largest_completed  # the model reads the failed students as larger
    assert with_failures[1] > completed_only[1]
    assert with_failures[0] == completed_only[0] == -60.0
    _, without_failures = _history("wide_lr", narrow)
    assert len(_plausible_where_failed(without_failures, [_fit(without_failures, 0), _fit(without_failures, 1)])) == 0


def test_a_width_tried_only_at_poor_learning_rates_is_predicted_from_the_trend_of_the_best():
    """The benchmark's seed 27 of `wide_lr` once ended at exact 73.1 within the size limit, with a
    512-wide student: its students of width 768 or 1024 had been tried far from their learning
    rates, and its Gaussian processes, with one lengthscale per axis, read the low learning
    rates those widths need as bad (narrow students score badly there). The best points' trend
    (the learning rate falling with the width, `optimizer.trends`) as one more input predicts a
    wide student at its own learning rate from the good students of every width.

    That history, made by hand: narrow students at their own learning rates, wide ones only at
    a narrow student's. (The sweep of seed 27 itself takes another path since the hypervolume's
    reference also reads the failed trials' plausible values: it reaches 76.1 with a 1024-wide
    student at its last trial, too close to the line to pin the mechanism on.)"""
    rng = np.random.default_rng(0)
    narrow = [_student(w, layers := int(rng.integers(2, 13)), _best_log_lr("wide_lr", float(w), layers, 32.0)
                       + rng.normal(0.0, 0.1)) for w in ["128", "256", "384", "512"] * 4]
    wide = [_student(w, int(rng.integers(2, 13)), -3.6 + rng.normal(0.0, 0.2)) for w in ["768", "1024"] * 3]
    space, data = _history("wide_lr", narrow + wide)
    with_trend = data.with_best_point_trends(frontier_ranks(data))
    assert [(space.names[t.along], space.names[t.follower]) for t in with_trend.trends] == [("hidden", "learning_rate")]
    # the residual may stand in for the learning rate, no other axis
    assert [space.names[axis] for axis in np.flatnonzero(with_trend.input_replaceable)] == ["learning_rate"]
    assert not data.input_replaceable.any()
    target = space.encode_many([_student("1024", 10, _best_log_lr("wide_lr", 1024.0, 10, 32.0))])

    def predicted_exact(d: History) -> float:
        return -float(_fit(d, 0).predict(d.inputs(target))[0][0])

    wide_exact = data.objectives[len(narrow):, 0]
    assert -np.nanmin(wide_exact) < 45.0  # far below what those widths reach at their own learning rates
    assert predicted_exact(with_trend) > predicted_exact(data) + 5.0

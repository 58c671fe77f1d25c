"""The interaction problem (`deep_lr`, benchmarks/problems_interactions.py): the best learning
rate falls steeply with depth, and the deep, wide students that make the frontier's accurate
end run out of memory at large batches. A fixed seed must reach that end within the budget.

Seed 33 since the fifteenth round: main's search ended there at exact 75.8 within the size limit;
with the best points moved up their trend (`suggest._along_trends`) it reaches 77.8. (Seed 27,
this test's seed from the ninth round, which that round's search lost at 74.4, ends at 75.2 with
the moves; seed 4, the seed before it, still reaches the accurate end.) Deterministic: the same
seeds as `benchmarks/optimizer_quality`'s sequential mode, so the benchmark's seed 33 is this run.

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

BUDGET = 100
SEED = 33
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


def test_a_width_tried_only_at_poor_learning_rates_is_predicted_from_the_trend_of_the_best():
    """The benchmark's seed 27 of `wide_lr` once ended at exact 73.1 within the size limit, with a
    512-wide student: its students of width 768 or 1024 had been tried far from their learning
    rates, and its Gaussian processes, with one lengthscale per axis, read the low learning
    rates those widths need as bad (narrow students score badly there). The best points' trend
    (the learning rate falling with the width, `optimizer.trends`) as one more input predicts a
    wide student at its own learning rate from the good students of every width.

    That history, made by hand: narrow students at their own learning rates, wide ones only at
    a narrow student's. (The sweep of seed 27 itself takes another path since the hypervolume's
    reference also reads the candidates' plausible values: it tries 22 wide students and ends at
    74.8 with a 1024-wide one, its warm-up and batch size untuned.)"""
    problem = PROBLEMS["wide_lr"]
    spec = ExperimentSpec.model_validate(problem.spec)
    space = SearchSpace(spec)
    rng = np.random.default_rng(0)

    def student(width: str, layers: int, log_lr: float) -> dict:
        return {"hidden": width, "n_layers": layers, "learning_rate": float(10**log_lr), "batch_size": "32",
                "dropout": 0.1, "warmup": 0.08, "alpha_ce": 0.6}

    narrow = [student(w, layers := int(rng.integers(2, 13)), _best_log_lr("wide_lr", float(w), layers, 32.0)
                      + rng.normal(0.0, 0.1)) for w in ["128", "256", "384", "512"] * 4]
    wide = [student(w, int(rng.integers(2, 13)), -3.6 + rng.normal(0.0, 0.2)) for w in ["768", "1024"] * 3]
    history = [Observation(assignments=a, values=problem.true_values(a), failed=problem.true_values(a) is None)
               for a in narrow + wide]
    data = History.build(spec, space, history)
    with_trend = data.with_best_point_trends(frontier_ranks(data))
    assert [(space.names[t.along], space.names[t.follower]) for t in with_trend.trends] == [("hidden", "learning_rate")]
    target = student("1024", 10, _best_log_lr("wide_lr", 1024.0, 10, 32.0))

    def predicted_exact(d: History) -> float:
        done = d.tiers != FAILED
        model = GaussianProcess.fit(d.inputs(d.rows[done]), d.objectives[done, 0], d.input_continuous,
                                    ordinal=d.input_ordinal, optional=d.input_optional)
        return -float(model.predict(d.inputs(space.encode_many([target])))[0][0])

    assert max(o.values["exact"] for o in history[len(narrow):] if o.values) < 45.0  # far below their best
    assert predicted_exact(with_trend) > predicted_exact(data) + 5.0

"""Early stopping's rules (paretune.stopping) on hand-made curves, and the definition that opts in."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from paretune import stopping
from paretune.optimizer import ExperimentSpec, SpecError
from paretune.stopping import (
    MAX_CHECKPOINTS_REASON,
    NOISE_MARGIN,
    PARETO_REASON,
    RungEntry,
    checkpoint_noise,
    continues_at_rung,
    converged,
    decide,
    fixed_metrics,
    is_rung,
    rungs,
)

DEFINITION = {
    "name": "students",
    "parameters": [{"name": "width", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}],
    "metrics": [{"name": "f1", "objective": "maximize", "threshold": 40.0},
                {"name": "size", "objective": "minimize", "threshold": 100.0}],
    "training_monitor": {
        "max_checkpoints": 9,
        "early_stopping_criteria": [{"type": "convergence", "name": "flat f1", "metric": "f1",
                                     "lookback_checkpoints": 2, "min_checkpoints": 3}],
    },
    "metadata": {"early_stopping": {"type": "pareto", "reduction_factor": 3, "min_checkpoints": 1}},
}


def spec_with(**changes: object) -> ExperimentSpec:
    definition = copy.deepcopy(DEFINITION) | changes
    return ExperimentSpec.model_validate(definition)


# -- the definition -------------------------------------------------------------------------------
def test_a_training_monitor_loads_and_round_trips():
    spec = spec_with()
    assert spec.training_monitor.max_checkpoints == 9
    assert spec.training_monitor.early_stopping_criteria[0].lookback_checkpoints == 2
    assert spec.early_stopping.reduction_factor == 3
    again = ExperimentSpec.model_validate(spec.to_dict())
    assert again == spec
    assert again.to_dict()["training_monitor"] == DEFINITION["training_monitor"]
    assert again.to_dict()["metadata"]["early_stopping"] == DEFINITION["metadata"]["early_stopping"]


def test_the_least_a_trial_can_cost_is_the_earliest_stop_of_its_cheapest_task():
    assert spec_with().least_trial_cost == pytest.approx(1 / 9)  # the first rung
    without_pareto = spec_with(metadata={})  # convergence: 2 checkpoints past the first, and at least 3
    assert without_pareto.least_trial_cost == pytest.approx(3 / 9)
    monitor_only = spec_with(metadata={}, training_monitor={"max_checkpoints": 4})
    assert monitor_only.least_trial_cost == 1.0  # nothing ends a trial before max_checkpoints
    tasks = spec_with(tasks=[{"name": "small", "cost": 0.25}, {"name": "full", "cost": 1.0}])
    assert tasks.least_trial_cost == pytest.approx(0.25 / 9)
    plain = {key: value for key, value in DEFINITION.items() if key not in ("training_monitor", "metadata")}
    assert ExperimentSpec.model_validate(plain).least_trial_cost == 1.0


@pytest.mark.parametrize("change, message", [
    (lambda d: d["training_monitor"].update(max_checkpoints=0), "training_monitor.max_checkpoints"),
    (lambda d: d["training_monitor"].update(max_checkpoints=201), "training_monitor.max_checkpoints"),
    (lambda d: d["training_monitor"].update(max_checkpoint=3), "did you mean `max_checkpoints`"),
    (lambda d: d["training_monitor"]["early_stopping_criteria"][0].update(metric="exact"),
     "early_stopping_criteria[0].metric: no metric named 'exact'"),
    (lambda d: d["training_monitor"]["early_stopping_criteria"][0].update(type="median"),
     "early_stopping_criteria[0].type"),
    (lambda d: d["training_monitor"]["early_stopping_criteria"][0].update(min_checkpoints=10),
     "is more than training_monitor.max_checkpoints 9"),
    (lambda d: d["training_monitor"]["early_stopping_criteria"].append(
        dict(d["training_monitor"]["early_stopping_criteria"][0])), "'flat f1' is already used"),
    (lambda d: d["metadata"]["early_stopping"].update(reduction_factor=1), "metadata.early_stopping.reduction_factor"),
    (lambda d: d["metadata"]["early_stopping"].update(type="asha"), "metadata.early_stopping.type"),
    (lambda d: d["metadata"]["early_stopping"].update(eta=3), "metadata.early_stopping.eta: unknown key; known keys: "
                                                              "min_checkpoints, reduction_factor, type"),
    (lambda d: d["metadata"]["early_stopping"].update(min_checkpoints=9), "leaves no rung"),
    (lambda d: d.pop("training_monitor"), "metadata.early_stopping: needs `training_monitor"),
])
def test_a_bad_training_monitor_or_early_stopping_is_refused_naming_the_field(change, message):
    definition = copy.deepcopy(DEFINITION)
    change(definition)
    with pytest.raises(SpecError) as refused:
        ExperimentSpec.model_validate(definition)
    assert message in str(refused.value)


# -- SigOpt's convergence criterion ----------------------------------------------------------------
def test_convergence_stops_a_flat_curve_after_min_checkpoints_and_never_a_rising_one():
    flat = [50.0, 50.0, 50.0, 50.0, 50.0]
    assert [converged(flat[:n], "maximize", 2, 4) for n in range(1, 6)] == [False, False, False, True, True]
    rising = [10.0 * n for n in range(1, 30)]
    assert not any(converged(rising[:n], "maximize", 2, 1) for n in range(1, 30))
    falling_loss = [5.0, 4.0, 3.0, 2.5, 2.4]
    assert not any(converged(falling_loss[:n], "minimize", 2, 1) for n in range(1, 6))
    assert converged([5.0, 4.0, 4.0, 4.1], "minimize", 2, 1)


def test_each_criterion_answers_by_name_and_max_checkpoints_bounds_a_trial():
    spec = spec_with()
    flat = [{"f1": 50.0, "size": 10.0}] * 3
    decision = decide(spec, flat, None, order=1, fixed=set())
    assert decision.should_stop and decision.reasons == {"flat f1": True, MAX_CHECKPOINTS_REASON: False}
    rising = [{"f1": 10.0 * n, "size": 10.0} for n in range(1, 10)]
    decision = decide(spec, rising, None, order=1, fixed=set())
    assert decision.should_stop and decision.reasons == {"flat f1": False, MAX_CHECKPOINTS_REASON: True}
    assert not decide(spec, rising[:5], None, order=1, fixed=set()).should_stop


# -- the Pareto rung rule --------------------------------------------------------------------------
def test_rungs_are_geometric_in_eta_below_max_checkpoints():
    assert rungs(1, 3, 9) == [1, 3]
    assert rungs(1, 3, 10) == [1, 3, 9]
    assert rungs(2, 2, 20) == [2, 4, 8, 16]
    spec = spec_with()
    assert [n for n in range(1, 10) if is_rung(spec, n)] == [1, 3]


def entries(*points: tuple[float, float]) -> list[RungEntry]:
    return [RungEntry(index + 1, {"f1": f1, "size": size}) for index, (f1, size) in enumerate(points)]


def test_the_non_dominated_go_on_and_the_dominated_stop():
    spec = spec_with()
    peers = entries((60, 50), (55, 50), (50, 50), (62, 50), (45, 50), (58, 50))  # one size: f1 decides
    keep = [p.order for p in peers if continues_at_rung(spec, p, peers, 3, fixed={"size"})]
    assert keep == [1, 4]  # the best third: f1 62 and 60
    both = entries((60, 40), (50, 20), (40.5, 10), (45, 30), (41, 35), (42, 38))  # nothing fixed: Pareto ranks
    keep = [p.order for p in both if continues_at_rung(spec, p, both, 3, fixed=set())]
    assert len(keep) == 2 and set(keep) <= {1, 2, 3}  # non-dominated ones only, ties by hypervolume


def test_large_students_compete_with_students_of_their_size_not_with_fast_small_ones():
    """The trap: early on, small students are both smaller and more accurate than large ones.
    With size fixed, each size band keeps its best; plain non-dominated sorting would not."""
    spec = spec_with()
    small = [(50 + i, 10 + i) for i in range(9)]  # fast learners
    large = [(30 + i, 80 + i) for i in range(9)]  # slow starters, every one dominated by a small one
    peers = entries(*small, *large)
    banded = {p.order for p in peers if continues_at_rung(spec, p, peers, 3, fixed={"size"})}
    naive = {p.order for p in peers if continues_at_rung(spec, p, peers, 3, fixed=set())}
    large_orders = set(range(10, 19))
    assert banded & large_orders, "a band of large students keeps its best"
    assert not naive & large_orders, "plain non-dominated sorting stops every large student"


def test_a_fixed_metric_that_misses_its_threshold_stops_the_trial_and_uncertain_ones_rank_it_last():
    spec = spec_with()
    too_big = RungEntry(1, {"f1": 90.0, "size": 150.0})  # size threshold 100: it can never meet it
    assert not continues_at_rung(spec, too_big, [too_big], 3, fixed={"size"})
    assert continues_at_rung(spec, too_big, [too_big], 3, fixed=set())  # size may still move: ranked, not stopped
    peers = entries((39, 50), (39.5, 50), (41, 50))  # f1 threshold 40: only the third meets it
    assert [p.order for p in peers if continues_at_rung(spec, p, peers, 3, fixed={"size"})] == [3]


def test_no_rung_waits_for_a_straggler():
    """The first trial at a rung is answered at once, alone; later ones against those before them."""
    spec = spec_with()
    first = [{"f1": 20.0, "size": 50.0}]
    assert decide(spec, first, [], order=1, fixed=set()).reasons[PARETO_REASON] is False
    peers = entries((60, 50), (61, 50), (62, 50))
    late = [{"f1": 10.0, "size": 50.0}]
    assert decide(spec, late, peers, order=4, fixed={"size"}).reasons[PARETO_REASON] is True
    assert decide(spec, late, None, order=4, fixed={"size"}).reasons.get(PARETO_REASON) is None  # not a rung


def test_fixed_metrics_are_those_that_never_move_within_a_trial():
    spec = spec_with()
    curves = [[{"f1": 10, "size": 40}, {"f1": 20, "size": 40}], [{"f1": 5, "size": 70}]]
    assert fixed_metrics(spec, curves) == {"size"}
    assert fixed_metrics(spec, [[{"f1": 10, "size": 40}]]) is None  # no evidence yet
    assert fixed_metrics(spec, [[{"f1": 10, "size": 40}, {"f1": 20, "size": 41}]]) == set()  # evidence: none


def test_before_any_second_checkpoint_no_trial_with_two_metrics_is_stopped():
    """With four workers, the first four trials reach the first rung together, before any trial
    shows which metrics are fixed: ranked on both, the slow large students would stop. A spec
    with one optimized metric has no such trap and is ranked as ever."""
    spec = spec_with()
    first = entries((50, 10), (45, 12), (20, 90), (22, 85))  # the large ones: dominated by a small one
    fixed = fixed_metrics(spec, [[p.values] for p in first])
    assert [decide(spec, [p.values], first[:p.order - 1], p.order, fixed).should_stop for p in first] == [False] * 4
    assert all(continues_at_rung(spec, p, first, 3, fixed=None) for p in first)
    assert not {3, 4} & {p.order for p in first if continues_at_rung(spec, p, first, 3, fixed=set())}
    one_metric = spec_with(metrics=[DEFINITION["metrics"][0]])
    assert [p.order for p in first if continues_at_rung(one_metric, p, first, 3, fixed=None)] == [1]


def test_a_checkpoint_without_a_metric_counts_as_the_worst_on_it():
    spec = spec_with()
    peers = [RungEntry(1, {"f1": 50.0}), RungEntry(2, {"f1": 40.0, "size": 20.0}), RungEntry(3, {"f1": 45.0, "size": 30.0})]
    assert [p.order for p in peers if continues_at_rung(spec, p, peers, 3, fixed=set())] == [2]


def test_only_a_comparable_peer_at_least_as_large_can_stop_a_trial():
    """A slightly smaller peer that leads at an early rung learned faster (the trap, in small) and
    stops nothing; a slightly larger one that leads is ahead although it learns no slower."""
    spec = spec_with()
    span = entries((70, 10), (20, 90))  # the rung's sizes span 10..90: comparable means within 80 / 12
    trial = RungEntry(5, {"f1": 40.0, "size": 50.0})
    smaller = RungEntry(3, {"f1": 45.0, "size": 48.0})
    larger = RungEntry(4, {"f1": 45.0, "size": 52.0})
    assert continues_at_rung(spec, trial, [*span, smaller, trial], 3, fixed={"size"})
    assert not continues_at_rung(spec, trial, [*span, larger, trial], 3, fixed={"size"})
    assert continues_at_rung(spec, smaller, [*span, trial, smaller], 3, fixed={"size"})


def test_a_larger_peer_stops_a_trial_only_by_the_lead_its_extra_size_does_not_buy():
    """Near the front, a slightly larger peer is a little ahead because it is larger: the trial
    would end as a frontier point (smaller, a little less accurate). The front of the finished
    trials says what size buys (here 10% more f1 for 10 more units of size, read where the trial
    sits): that part of a lead stops nothing, the rest does."""
    spec = spec_with()
    span = entries((70, 10), (20, 90))  # comparable: within 80 / 12 of size 50
    trial = RungEntry(5, {"f1": 40.0, "size": 50.0})
    a_little_ahead = RungEntry(4, {"f1": 40.6, "size": 52.0})  # 1.5% ahead; 2 units buy 1.9%
    far_ahead = RungEntry(4, {"f1": 45.0, "size": 52.0})
    finished = [{"f1": 60.0, "size": 45.0}, {"f1": 66.0, "size": 55.0},
                {"f1": 50.0, "size": 70.0}]  # the last is dominated: not on the front
    assert not continues_at_rung(spec, trial, [*span, a_little_ahead, trial], 3, fixed={"size"})  # no front yet
    assert continues_at_rung(spec, trial, [*span, a_little_ahead, trial], 3, fixed={"size"}, finished=finished)
    assert not continues_at_rung(spec, trial, [*span, far_ahead, trial], 3, fixed={"size"}, finished=finished)
    flat_here = [{"f1": 60.0, "size": 45.0}, {"f1": 60.1, "size": 55.0}, {"f1": 80.0, "size": 65.0}]
    assert not continues_at_rung(spec, trial, [*span, a_little_ahead, trial], 3, fixed={"size"}, finished=flat_here)
    lower_is_better = spec_with(metrics=[{"name": "loss", "objective": "minimize"}, DEFINITION["metrics"][1]],
                                training_monitor={"max_checkpoints": 9})
    loss = [RungEntry(o, {"loss": 1.0 / p.values["f1"], "size": p.values["size"]}) for o, p in
            ((1, span[0]), (2, span[1]), (4, a_little_ahead), (5, trial))]
    loss_finished = [{"loss": 1.0 / v["f1"], "size": v["size"]} for v in finished]
    assert continues_at_rung(lower_is_better, loss[3], loss, 3, fixed={"size"}, finished=loss_finished)
    assert not continues_at_rung(lower_is_better, loss[3], loss, 3, fixed={"size"})


def paced_f1(width: float, learning_rate: float, epoch: int) -> float:
    """A student's f1 after `epoch` of 9: a wider one ends better at the learning rate 0.5, and
    the learning rate sets the pace (a higher one learns faster early, past 0.5 it ends worse)."""
    final = 40.0 + 30.0 * width - 40.0 * (learning_rate - 0.5) ** 2
    pace = (1.0 + 3.0 * width) * (1.5 - learning_rate)
    return final * (1 - np.exp(-epoch / pace)) / (1 - np.exp(-9 / pace))


def paced_entry(order: int, width: float, learning_rate: float, epoch: int = 1) -> RungEntry:
    values = {"f1": float(paced_f1(width, learning_rate, epoch)), "size": 10.0 + 80.0 * width}
    return RungEntry(order, values, {"width": width, "learning_rate": learning_rate})


def test_a_peer_that_learns_faster_early_stops_no_one_its_pace_is_known_of():
    """A peer of the same size past the best learning rate leads at the first rung and ends
    behind. Rung values alone stop the trial at the best learning rate; projected to the end by
    the growth the finished trials show at each one's settings, it leads, and a trial is stopped
    only where both say so. A peer that leads at the same pace (the same settings, higher at the
    rung) still stops it."""
    spec = spec_with(parameters=[{"name": "width", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
                                 {"name": "learning_rate", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}],
                     metrics=[{"name": "f1", "objective": "maximize"}, {"name": "size", "objective": "minimize"}])
    finished = [stopping.TrialCurve({"width": w, "learning_rate": lr},
                                    [paced_entry(0, w, lr, epoch).values for epoch in range(1, 10)])
                for w in (0.2, 0.5, 0.8) for lr in (0.2, 0.5, 0.9)]
    assert stopping.growth_to_end(spec, 1, finished[:stopping.GROWTH_MIN_TRIALS - 1], {"size"}) is None
    growth = stopping.growth_to_end(spec, 1, finished, {"size"})
    span = [paced_entry(1, 0.0, 0.5), paced_entry(2, 1.0, 0.5)]  # comparable: within 80 / 12 of size 50
    trial, faster = paced_entry(3, 0.5, 0.5), paced_entry(4, 0.5, 0.95)
    assert faster.values["f1"] > trial.values["f1"] + 5 and paced_f1(0.5, 0.95, 9) < paced_f1(0.5, 0.5, 9) - 5
    assert not continues_at_rung(spec, trial, [*span, faster, trial], 3, fixed={"size"})
    assert continues_at_rung(spec, trial, [*span, faster, trial], 3, fixed={"size"}, growth=growth)
    # the faster one goes on too: it is behind only as projected, and a stop needs both to agree
    assert continues_at_rung(spec, faster, [*span, trial, faster], 3, fixed={"size"}, growth=growth)
    ahead = RungEntry(5, {**trial.values, "f1": trial.values["f1"] + 5}, trial.assignments)
    assert not continues_at_rung(spec, trial, [*span, ahead, trial], 3, fixed={"size"}, growth=growth)
    projected = growth.project([trial, faster])
    final = [paced_f1(0.5, 0.5, 9), paced_f1(0.5, 0.95, 9)]
    assert [e.values["f1"] for e in projected] == pytest.approx(final, rel=0.05)


def test_a_trial_whose_best_case_a_finished_trial_beats_stops_even_alone_at_its_rung():
    """Alone at its rung a trial is among the best of its peers, yet at settings where the
    finished trials show how it ends, a finished student of its size ends better than the top of
    its projection: it can add nothing to the front, and stops. Where its projection's top
    reaches the front, where no finished trial is near its settings, or before any growth is
    known, it goes on; with a threshold, a top that misses it stops the trial, unless no student
    of its size trained to the end."""
    spec = spec_with(parameters=[{"name": "width", "type": "double", "bounds": {"min": 0.0, "max": 1.0}},
                                 {"name": "learning_rate", "type": "double", "bounds": {"min": 0.0, "max": 1.0}}],
                     metrics=[{"name": "f1", "objective": "maximize"}, {"name": "size", "objective": "minimize"}])
    grid = [(w, lr) for w in (0.2, 0.5, 0.8) for lr in (0.2, 0.5, 0.9)]
    trained = [stopping.TrialCurve({"width": w, "learning_rate": lr},
                                   [paced_entry(0, w, lr, epoch).values for epoch in range(1, 10)]) for w, lr in grid]
    finished = [t.curve[-1] for t in trained]
    growth = stopping.growth_to_end(spec, 1, trained, {"size"})
    past_its_best = paced_entry(1, 0.8, 0.9)  # ends at 57.6, where the finished (0.8, 0.5) ends at 64
    assert paced_f1(0.8, 0.9, 9) < paced_f1(0.8, 0.5, 9) - 5
    assert continues_at_rung(spec, past_its_best, [past_its_best], 3, fixed={"size"}, finished=finished)
    assert not continues_at_rung(spec, past_its_best, [past_its_best], 3, fixed={"size"}, finished=finished,
                                 growth=growth)
    at_its_best = paced_entry(2, 0.8, 0.5)
    assert continues_at_rung(spec, at_its_best, [at_its_best], 3, fixed={"size"}, finished=finished, growth=growth)
    slower = stopping.growth_to_end(spec, 1, [t for t in trained if t.assignments["learning_rate"] <= 0.5], {"size"})
    assert slower.project([past_its_best], stopping.HOPELESS_DEVIATIONS)[0].values["f1"] > 70  # pace unknown there
    assert continues_at_rung(spec, past_its_best, [past_its_best], 3, fixed={"size"}, finished=finished,
                             growth=slower)
    thresholded = spec_with(parameters=spec.model_dump()["parameters"],
                            metrics=[{"name": "f1", "objective": "maximize", "threshold": 60.0},
                                     {"name": "size", "objective": "minimize"}])
    growth = stopping.growth_to_end(thresholded, 1, trained, {"size"})
    below = paced_entry(3, 0.5, 0.5)  # ends at 55
    assert continues_at_rung(thresholded, below, [below], 3, fixed={"size"}, finished=finished)
    assert not continues_at_rung(thresholded, below, [below], 3, fixed={"size"}, finished=finished, growth=growth)
    # a student larger than every one trained to the end: the model's spread is not trusted there
    narrower = [values for values in finished if values["size"] <= 50.0]
    assert not continues_at_rung(thresholded, past_its_best, [past_its_best], 3, fixed={"size"}, finished=finished,
                                 growth=growth)
    assert continues_at_rung(thresholded, past_its_best, [past_its_best], 3, fixed={"size"}, finished=narrower,
                             growth=growth)


def test_the_checkpoints_noise_is_read_from_the_ends_of_full_trials():
    """The noise of learning curves near their end, from second differences: a known noise comes
    back; straight curves have none; trials stopped early and a lone curve give no estimate."""
    spec = spec_with()
    rng = np.random.default_rng(0)
    epochs = np.arange(1, 10)
    noisy = [[{"f1": float(60 * (1 - np.exp(-e / 3)) + rng.normal(0, 0.5)), "size": 40.0} for e in epochs]
             for _ in range(30)]
    assert 0.35 < checkpoint_noise(spec, noisy)["f1"] < 0.7  # 0.5 (the curves' bend adds a little)
    straight = [[{"f1": 2.0 * e, "size": 40.0} for e in epochs] for _ in range(3)]
    assert checkpoint_noise(spec, straight) == {"f1": 0.0, "size": 0.0}
    assert checkpoint_noise(spec, [curve[:3] for curve in noisy]) == {}  # none reached max_checkpoints
    assert checkpoint_noise(spec, noisy[:1]) == {}  # two differences: not enough


def test_the_noise_is_read_from_the_latest_finished_trials_only(monkeypatch):
    """A long sweep's noise is read from its last NOISE_TRIALS finished trials, so a rung's cost
    stays bounded: earlier trials, however noisy, do not count."""
    monkeypatch.setattr(stopping, "NOISE_TRIALS", 10)
    spec = spec_with()
    rng = np.random.default_rng(1)
    epochs = np.arange(1, 10)

    def curves(n: int, sd: float) -> list[list[dict[str, float]]]:
        return [[{"f1": float(2.0 * e + rng.normal(0, sd)), "size": 40.0} for e in epochs] for _ in range(n)]

    quiet = checkpoint_noise(spec, [*curves(40, 5.0), *curves(10, 0.1)])["f1"]
    assert 0.05 < quiet < 0.2
    assert checkpoint_noise(spec, [*curves(10, 0.1), *curves(40, 5.0)])["f1"] > 2.0  # the latest are the noisy


def test_a_trial_behind_by_less_than_the_noise_is_not_stopped():
    """One size, so f1 decides; the best third goes on. A trial behind by less than
    NOISE_MARGIN standard deviations of the noise is judged as if level, and goes on."""
    spec = spec_with()
    peers = entries((60.0, 50), (59.0, 50), (58.0, 50))
    close, far = RungEntry(4, {"f1": 59.5, "size": 50.0}), RungEntry(5, {"f1": 57.0, "size": 50.0})
    noise = {"f1": 1.2 / NOISE_MARGIN}  # a margin of 1.2 points
    for trial in (close, far):
        assert not continues_at_rung(spec, trial, [*peers, trial], 3, fixed={"size"})  # without the noise
    assert continues_at_rung(spec, close, [*peers, close], 3, fixed={"size"}, noise=noise)
    assert not continues_at_rung(spec, far, [*peers, far], 3, fixed={"size"}, noise=noise)

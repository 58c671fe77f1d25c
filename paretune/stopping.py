"""When a trial should stop early: pure functions of its curve and its peers' curves.

Two rules answer every checkpoint (SigOpt's `should_stop` and `stopping_reasons`):

- **SigOpt's convergence criterion** (`training_monitor.early_stopping_criteria`): a metric that
  has not improved over its last `lookback_checkpoints` checkpoints, once `min_checkpoints` are in.
- **The Pareto rung rule** (`metadata.early_stopping: {type: pareto, ...}`), asynchronous like
  ASHA: rungs sit at checkpoint counts `min_checkpoints * eta**k` below `max_checkpoints`; a
  trial reaching a rung is compared at once with every trial that reached it before (no rung
  waits for stragglers) and continues if it is among the best `1/eta` of them.

The workload's trap, and how the rule avoids it: a student's size is known at its first
checkpoint, its accuracy is not, and small students learn fastest. Plain non-dominated sorting at
an early rung therefore promotes the small students and stops the large ones the frontier's far
end needs. So trials are compared on what is still uncertain: metrics whose value never moves
within a trial (`fixed_metrics`, read from the curves) only choose *whom* a trial competes with —
the peers of comparable size: within `1/(4 eta)` of the range the rung's peers span, on each
fixed metric, and no better than the trial on it (at least as large) — and a fixed metric that
misses its threshold stops the trial at once, since it can never meet it. Only a peer at least
as large can stop a trial: a smaller one learned faster, so its lead at an early rung is the
trap again, in small (and a slightly smaller, slightly less accurate student is a frontier
point, not a dominated one); a peer as large or larger that leads is ahead although it learns
no faster — but only by the part of its lead that its extra size does not buy. Along the front
of the trials trained to the end, accuracy rises with size at some local rate (a relative one:
it then holds at every rung of a learning curve); a larger peer's rung value is lowered by that
rate times what it gives up on size (`finished_values`). Without that, a refinement near the
front, behind a slightly larger peer by what the front's slope predicts, was stopped although it
would end as a frontier point (smaller and a little less accurate): at 2-4 times the default
budget nearly every trial the rule stopped was one. Among those peers the order is: thresholds
met at the rung, non-dominated rank on the uncertain metrics, then hypervolume contribution
(larger first). Without a fixed metric,
every peer is compared on every optimized metric; before any trial has reported a second
checkpoint, which metrics are fixed is not known, and no trial with two optimized metrics stops.

A rung is not decided on noise: a trial is stopped only if it would be at rung values
`NOISE_MARGIN` standard deviations of the checkpoints' noise better (`checkpoint_noise`, read
from the trials that trained to the end). At the first rung a slow starter has reached a
quarter of its final accuracy, so differences between comparable students shrink to the size
of the noise there.

Nor is a rung decided on pace. A higher learning rate learns faster early and may end behind: a
peer of the same size past its best learning rate led the trial at the best one at the first
rung, and stopped it (`lr_pace` in benchmarks/early_stopping.py). So once `GROWTH_MIN_TRIALS`
trials have trained to the end, a trial is stopped only if it is out of the best both at its
rung values and at the final values they project to (`Growth`): each rung value times the growth
from that rung to the end that a Gaussian process over the hyperparameters, fit on the finished
trials, expects at the trial's settings. Where the finished trials say nothing (far from every
one of them), the model expects the average growth. Why both: on projections alone, at four
times the default budget, the rule stopped nearly four times as many refinements near the front,
most of them would-be frontier points (benchmarks/RESULTS.md, "Early stopping, fifth round").

The same model also stops a trial whatever its peers, where even the top of its projection (its
rung values given the doubt, grown `HOPELESS_DEVIATIONS` of the model's standard deviations
toward better) misses a threshold or is dominated by a trial trained to the end: it can add
nothing to the front (`_hopeless`). Peers of comparable size cannot see that: alone in its size
band a trial is always among the best of it. Only where a trial of comparable size trained to the
end: past them the model's spread understates what it does not know (a large, slow starter,
projected from the growth of smaller students, was stopped at a tenth of what it ended at).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from paretune.optimizer import ExperimentSpec, Metric
from paretune.optimizer.gp import MAX_TRAINING_POINTS, GaussianProcess
from paretune.optimizer.pareto import hypervolume_contributions, nondominated_ranks, pareto_front
from paretune.optimizer.space import SearchSpace

PARETO_REASON = "pareto"  # the key of the rung rule in `stopping_reasons`
# Comparable size: within 1/(BAND_SHARE * eta) of the range the rung's peers span on each fixed
# metric (benchmarks/RESULTS.md, issue 21: before peers had to be at least as large, 2 stopped too
# many slow starters and 8 too few trials; since, 2 and 4 measure alike).
BAND_SHARE = 4
# A trial is stopped only if it would be at rung values this many noise standard deviations
# better (benchmarks/RESULTS.md, "Early stopping, third round": 1, 2 and 3 measured alike).
NOISE_MARGIN = 2.0
NOISE_CHECKPOINTS = 4  # the last checkpoints of a full trial the noise is read from
NOISE_TRIALS = 1000  # the latest finished trials the noise is read from
# Growth from a rung to the end is projected once this many trials trained to the end (few: far
# from them the model expects the average growth), from at most the latest MAX_TRAINING_POINTS
# of them (the Gaussian process's own bound).
GROWTH_MIN_TRIALS = 4
# A trial stops, whatever its peers, once the top of its projection to the end (this many of the
# growth model's standard deviations toward the better end, from its rung values given the doubt)
# misses a threshold or is dominated by a trial trained to the end: it can add nothing to the front.
HOPELESS_DEVIATIONS = 2.0
MAX_CHECKPOINTS_REASON = "max_checkpoints"
Curve = Sequence[Mapping[str, float]]  # one trial's checkpoint values, in the order reported


@dataclass(frozen=True)
class StopDecision:
    """SigOpt's answer to a checkpoint: stop or not, and which rules say so (name -> met)."""

    should_stop: bool
    reasons: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class RungEntry:
    """One trial's values at a rung (its checkpoint number `rung`); `order` breaks exact ties
    (the suggestion id: earlier first, so a decision never depends on arrival timing);
    `assignments`: its hyperparameters, where `Growth` projects its values to the end."""

    order: int
    values: Mapping[str, float]
    assignments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialCurve:
    """A trial's hyperparameters and its checkpoint values so far: what `growth_to_end` reads."""

    assignments: Mapping[str, Any]
    curve: Curve


# -- SigOpt's convergence criterion --------------------------------------------------------------
def converged(curve: Sequence[float], objective: str, lookback_checkpoints: int, min_checkpoints: int) -> bool:
    """True once `min_checkpoints` are in and the latest value is no better than the best of the
    `lookback_checkpoints` before it: a flat (or falling) curve stops, a rising one never does."""
    if len(curve) < max(min_checkpoints, lookback_checkpoints + 1):
        return False
    latest, before = curve[-1], curve[-1 - lookback_checkpoints:-1]
    return latest <= max(before) if objective == "maximize" else latest >= min(before)


def convergence_reasons(spec: ExperimentSpec, curve: Curve) -> dict[str, bool]:
    """Each criterion of the training monitor by name: is it met by this curve?"""
    reasons = {}
    for criterion in spec.training_monitor.early_stopping_criteria if spec.training_monitor else ():
        values = [point[criterion.metric] for point in curve if criterion.metric in point]
        reasons[criterion.name] = len(values) == len(curve) and converged(
            values, spec.metric(criterion.metric).objective, criterion.lookback_checkpoints, criterion.min_checkpoints)
    return reasons


# -- the Pareto rung rule -------------------------------------------------------------------------
def rungs(min_checkpoints: int, reduction_factor: int, max_checkpoints: int) -> list[int]:
    """Checkpoint counts where trials are compared: geometric in eta, below a full trial's length."""
    points, count = [], min_checkpoints
    while count < max_checkpoints:
        points.append(count)
        count *= reduction_factor
    return points


def fixed_metrics(spec: ExperimentSpec, curves: Sequence[Curve]) -> set[str] | None:
    """Optimized and constraint metrics that never moved within any trial that reported two
    checkpoints or more (a student's size): known at the first checkpoint, nothing to wait for.
    None before any trial has reported two: which metrics are fixed is not known yet."""
    longer = [curve for curve in curves if len(curve) >= 2]
    if not longer:
        return None
    return {metric.name for metric in spec.required_metrics if _never_moved(metric.name, longer)}


def _never_moved(name: str, curves: Sequence[Curve]) -> bool:
    """True when some curve reports `name` twice or more and none saw it move (a metric that
    moves is told at its first such curve: the scan stops there)."""
    reported = False
    for curve in curves:
        values = [point[name] for point in curve if name in point]
        if len(values) >= 2:
            if max(values) - min(values) > 1e-12 * max(1.0, abs(values[0])):
                return False
            reported = True
    return reported


def _finished(spec: ExperimentSpec, curves: Sequence[Curve]) -> list[Curve]:
    """The curves of the trials that reached `max_checkpoints`."""
    monitor = spec.training_monitor
    return [curve for curve in curves if monitor is not None and len(curve) >= monitor.max_checkpoints]


def finished_values(spec: ExperimentSpec, curves: Sequence[Curve]) -> list[Mapping[str, float]]:
    """The last checkpoint of every trial trained to the end: where the front's slope is read."""
    return [curve[-1] for curve in _finished(spec, curves)]


def checkpoint_noise(spec: ExperimentSpec, curves: Sequence[Curve]) -> dict[str, float]:
    """Each optimized metric's noise from one checkpoint to the next (a standard deviation), read
    from the trials that reached `max_checkpoints`: the median absolute second difference over
    each one's last `NOISE_CHECKPOINTS` checkpoints, where learning curves are nearly straight,
    over 0.6745 sqrt(6) (a normal's median absolute value; a second difference of independent
    noise has six times its variance). What curvature is left only makes it larger: more
    caution. A metric without three such differences yet has none. Only the last
    `NOISE_TRIALS` finished trials count (in `curves`' order; the store's is the order they were
    suggested): a median of thousands of differences is settled, and a rung's cost stays bounded
    however long the sweep."""
    noise = {}
    recent = _finished(spec, curves)[-NOISE_TRIALS:]
    for metric in spec.optimized_metrics:
        differences: list[float] = []
        for curve in recent:
            values = [point[metric.name] for point in curve[-NOISE_CHECKPOINTS:] if metric.name in point]
            if len(values) >= 3 and all(math.isfinite(v) for v in values):
                differences.extend(np.abs(np.diff(values, 2)).tolist())
        if len(differences) >= 3:
            noise[metric.name] = float(np.median(differences)) / (0.6745 * math.sqrt(6))
    return noise


class MetricGrowth(NamedTuple):
    """One metric's growth model: of the log growth (final / rung value) where `relative`, else of
    the difference (final - rung value); `better`: +1 where larger values are better, -1 else."""

    model: GaussianProcess
    relative: bool
    better: float


@dataclass(frozen=True)
class Growth:
    """How each uncertain metric moves from one rung to the end of training, by the trial's
    hyperparameters: per metric, a Gaussian process of the log growth where every value it is fit
    on is positive, of the difference otherwise."""

    space: SearchSpace
    models: Mapping[str, MetricGrowth]

    def project(self, entries: Sequence[RungEntry], optimism: float = 0.0) -> list[RungEntry]:
        """`entries` with each modelled metric at the final value the model expects of it, moved
        `optimism` of its standard deviations toward the metric's better end. A value the model
        cannot project (not reported, not finite, or not positive for a relative model) stays as
        it is at the mean; with `optimism`, where its top is asked for, it is unbounded."""
        if not entries:
            return []
        rows = self.space.surrogate_rows(self.space.encode_many([dict(e.assignments) for e in entries]))
        projected = [dict(e.values) for e in entries]
        for name, growth in self.models.items():
            if optimism:
                mean, deviation = growth.model.predict(rows)
                steps = mean + optimism * growth.better * deviation
            else:
                steps = growth.model.predict_mean(rows)
            for values, step in zip(projected, steps):
                value = values.get(name, math.nan)
                if math.isfinite(value) and not growth.relative:
                    values[name] = value + float(step)
                elif math.isfinite(value) and value > 0:
                    values[name] = value * math.exp(float(step))
                elif optimism:
                    values[name] = growth.better * math.inf
        return [replace(e, values=values) for e, values in zip(entries, projected)]


def growth_to_end(spec: ExperimentSpec, count: int, trials: Sequence[TrialCurve], fixed: set[str]) -> Growth | None:
    """The growth from checkpoint number `count` to the end of the uncertain metrics (not
    `fixed`), fit on the latest `MAX_TRAINING_POINTS` trials that reached `max_checkpoints` (in
    `trials`' order, the store's being the order they were suggested); None before
    `GROWTH_MIN_TRIALS` of them report a metric at both ends."""
    monitor = spec.training_monitor
    if monitor is None or count >= monitor.max_checkpoints:
        return None
    finished = [t for t in trials if len(t.curve) >= monitor.max_checkpoints][-MAX_TRAINING_POINTS:]
    if len(finished) < GROWTH_MIN_TRIALS:
        return None
    space = SearchSpace(spec)
    rows = space.surrogate_rows(space.encode_many([dict(t.assignments) for t in finished]))
    models = {}
    for metric in spec.required_metrics:
        if metric.name in fixed:
            continue
        ends = np.array([(t.curve[count - 1].get(metric.name, math.nan), t.curve[-1].get(metric.name, math.nan))
                         for t in finished], dtype=float)
        known = np.flatnonzero(np.isfinite(ends).all(axis=1))
        if len(known) < GROWTH_MIN_TRIALS:
            continue
        rung, final = ends[known, 0], ends[known, 1]
        relative = bool(np.all(rung > 0) and np.all(final > 0))
        growth = np.log(final / rung) if relative else final - rung
        model = GaussianProcess.fit(rows[known], growth, space.continuous, ordinal=space.ordinal)
        models[metric.name] = MetricGrowth(model, relative, 1.0 if metric.objective == "maximize" else -1.0)
    return Growth(space, models) if models else None


def continues_at_rung(spec: ExperimentSpec, trial: RungEntry, peers: Sequence[RungEntry], reduction_factor: int,
                      fixed: set[str] | None, noise: Mapping[str, float] | None = None,
                      finished: Sequence[Mapping[str, float]] = (), growth: Growth | None = None) -> bool:
    """Whether `trial` is among the best 1/eta of the trials that reached this rung (`peers`,
    itself included), compared on what is still uncertain (see the module docstring);
    `finished`: `finished_values`, where a larger peer's lead is discounted by the front's slope;
    `growth`: `growth_to_end`; with it, a trial out of the best at its rung values continues if
    it is among the best at the final values the group's rung values project to (the trial's
    given the doubt).

    Before any trial has reported two checkpoints (`fixed` None), a trial with two optimized
    metrics continues: comparing on both, a metric that may be fixed, is the trap itself. With
    four workers the first four trials reach the first rung together: in a lost seed of the
    benchmark, the two large ones stopped there, one of them the sweep's best student
    (benchmarks/RESULTS.md, "Early stopping, third round")."""
    if fixed is None:
        if len(spec.optimized_metrics) > 1:
            return True
        fixed = set()
    if noise:
        trial = replace(trial, values=_given_the_doubt(spec, trial.values, noise, fixed))
    if any(not _meets(metric, trial.values) for metric in _thresholded(spec) if metric.name in fixed):
        return False
    if growth is not None and _hopeless(spec, trial, growth, fixed, finished, reduction_factor):
        return False
    peers = [p for p in peers if p.order != trial.order and _meets_fixed(spec, p, fixed)] + [trial]
    known = [m for m in spec.optimized_metrics if m.name in fixed]
    uncertain = [m for m in spec.optimized_metrics if m.name not in fixed]
    group, compared = peers, list(spec.optimized_metrics)
    if known and uncertain:
        group, compared = _comparable(trial, peers, known, reduction_factor), uncertain
    if _among_best(spec, trial, group, compared, known, uncertain, reduction_factor, finished):
        return True
    if growth is None:
        return False
    projected = growth.project(group)  # only the group: at 10^5 trials, projecting every peer took seconds
    trial = next(entry for entry in projected if entry.order == trial.order)
    return _among_best(spec, trial, projected, compared, known, uncertain, reduction_factor, finished)


def _hopeless(spec: ExperimentSpec, trial: RungEntry, growth: Growth, fixed: set[str],
              finished: Sequence[Mapping[str, float]], reduction_factor: int) -> bool:
    """Whether even the top of `trial`'s projection to the end (`HOPELESS_DEVIATIONS`) misses a
    threshold, or is dominated by the final values of a trial trained to the end that met every
    threshold. Only where every uncertain metric that counts has a growth model (a rung value
    alone bounds nothing), and where a trial of comparable size trained to the end: the model's
    spread is not to be trusted past them (a large, slow starter projected from the growth of
    smaller students was stopped at a tenth of what it ended at)."""
    optimized = {m.name for m in spec.optimized_metrics}
    counted = [m for m in spec.required_metrics if m.name not in fixed
               and (m.threshold is not None or m.name in optimized)]
    if any(m.name not in growth.models for m in counted):
        return False
    if not _trained_near(spec, trial, fixed, finished, reduction_factor):
        return False
    top = growth.project([trial], HOPELESS_DEVIATIONS)[0].values
    return (any(not _meets(metric, top) for metric in _thresholded(spec))
            or _dominated_by_finished(spec, top, finished))


def _trained_near(spec: ExperimentSpec, trial: RungEntry, fixed: set[str],
                  finished: Sequence[Mapping[str, float]], reduction_factor: int) -> bool:
    """Whether a trial trained to the end is of comparable size: on every fixed metric within
    `1 / (BAND_SHARE eta)` of the range the finished trials span, either side of the trial."""
    near = np.full(len(finished), len(finished) > 0)
    for metric in spec.required_metrics:
        if metric.name in fixed:
            ends = _column(finished, metric.name)
            span = float(np.nanmax(ends) - np.nanmin(ends)) if np.isfinite(ends).any() else 0.0
            distance = np.abs(ends - trial.values.get(metric.name, math.nan))
            near &= distance <= span / (BAND_SHARE * reduction_factor)
    return bool(near.any())


def _dominated_by_finished(spec: ExperimentSpec, values: Mapping[str, float],
                           finished: Sequence[Mapping[str, float]]) -> bool:
    """Whether a trial trained to the end that met every threshold ended at least as good as
    `values` on every optimized metric and better on one."""
    if not finished:
        return False

    def scores(metric: Metric) -> np.ndarray:  # larger is better; NaN where not reported
        return (1.0 if metric.objective == "maximize" else -1.0) * _column(finished, metric.name)

    feasible = np.ones(len(finished), dtype=bool)
    for metric in _thresholded(spec):
        metric_scores = scores(metric)
        feasible &= np.isnan(metric_scores) | (metric_scores >= _score(metric, {metric.name: metric.threshold}))
    ends = np.column_stack([scores(m) for m in spec.optimized_metrics])[feasible]
    ends = np.where(np.isnan(ends), -np.inf, ends)
    best_case = np.array([_score(m, values) for m in spec.optimized_metrics])
    return bool(np.any(np.all(ends >= best_case, axis=1) & np.any(ends > best_case, axis=1)))


def _column(finished: Sequence[Mapping[str, float]], name: str) -> np.ndarray:
    """One metric's values over `finished` (NaN where not reported): column by column, since at
    10^5 finished trials a metric at a time per trial took a third of a second."""
    return np.fromiter((values.get(name, math.nan) for values in finished), float, len(finished))


def _among_best(spec: ExperimentSpec, trial: RungEntry, group: list[RungEntry], compared: list[Metric],
                known: list[Metric], uncertain: list[Metric], reduction_factor: int,
                finished: Sequence[Mapping[str, float]]) -> bool:
    """Whether `trial` ranks among the best 1/eta of `group` on the `compared` metrics."""
    if len(known) == 1 and len(uncertain) == 1:
        group = _net_of_size(trial, group, known[0], uncertain[0], finished)
    keep = max(1, len(group) // reduction_factor)
    ranking = _ranking(spec, group, compared)
    best = sorted(range(len(group)), key=ranking.__getitem__)[:keep]
    return trial.order in [group[i].order for i in best]


def _given_the_doubt(spec: ExperimentSpec, values: Mapping[str, float], noise: Mapping[str, float],
                     fixed: set[str]) -> dict[str, float]:
    """`values` `NOISE_MARGIN` noise standard deviations better on each optimized metric still
    uncertain: the rung values the trial is judged at."""
    better = dict(values)
    for metric in spec.optimized_metrics:
        if metric.name in better and metric.name not in fixed and metric.name in noise:
            step = NOISE_MARGIN * noise[metric.name]
            better[metric.name] += step if metric.objective == "maximize" else -step
    return better


def _comparable(trial: RungEntry, peers: list[RungEntry], known: list[Metric], reduction_factor: int
                ) -> list[RungEntry]:
    """The peers of comparable size: on every fixed metric, within `1 / (BAND_SHARE eta)` of the
    range the rung's peers span of the trial's value (a lone large student meets no small one),
    and no better than the trial (the module docstring says why)."""
    def value(entry: RungEntry, metric: Metric) -> float:
        return entry.values.get(metric.name, math.nan)

    spans = {m.name: float(np.nanmax([value(p, m) for p in peers]) - np.nanmin([value(p, m) for p in peers]))
             for m in known}
    return [p for p in peers if p.order == trial.order or all(
        abs(value(p, m) - value(trial, m)) <= spans[m.name] / (BAND_SHARE * reduction_factor)
        and _score(m, p.values) <= _score(m, trial.values) for m in known)]


def _net_of_size(trial: RungEntry, group: list[RungEntry], known: Metric, uncertain: Metric,
                 finished: Sequence[Mapping[str, float]]) -> list[RungEntry]:
    """`group` with each peer's `uncertain` value lowered by what its extra size buys: the
    relative rate at which `uncertain` improves along the finished trials' front, at the trial's
    value of `known`, times what the peer gives up on `known` (the module docstring says why).
    Unchanged where the rate is not known (fewer than two front points, values not positive)."""
    rate = _front_rate(known, uncertain, finished, _score(known, trial.values))
    if rate <= 0.0:
        return group
    sign = 1.0 if uncertain.objective == "maximize" else -1.0
    netted = []
    for peer in group:
        given_up = _score(known, trial.values) - _score(known, peer.values)
        value = peer.values.get(uncertain.name, math.nan)
        if peer.order != trial.order and given_up > 0 and math.isfinite(value) and value > 0:
            value *= math.exp(-sign * min(50.0, rate * given_up))  # past e^50 the lead is all size's anyway
            peer = replace(peer, values={**peer.values, uncertain.name: value})
        netted.append(peer)
    return netted


def _front_rate(known: Metric, uncertain: Metric, finished: Sequence[Mapping[str, float]], at: float) -> float:
    """How fast log(`uncertain`) improves per unit given up on `known` along the front of the
    finished trials, between the two front points around `at` (a score of `known`; the nearest
    two past either end); 0 where it cannot be read."""
    points = [(_score(known, values), values[uncertain.name]) for values in finished
              if math.isfinite(_score(known, values)) and math.isfinite(values.get(uncertain.name, math.nan))
              and values[uncertain.name] > 0]
    if len(points) < 2:
        return 0.0
    sign = 1.0 if uncertain.objective == "maximize" else -1.0
    losses = np.array([(-score, -sign * math.log(value)) for score, value in points])
    front = pareto_front(losses)
    front = front[np.argsort(front[:, 0])]  # from the best score of `known` to the worst
    if len(front) < 2:
        return 0.0
    given, gained = front[:, 0], -front[:, 1]
    right = int(np.clip(np.searchsorted(given, -at), 1, len(front) - 1))
    step = given[right] - given[right - 1]
    return max(0.0, float((gained[right] - gained[right - 1]) / step)) if step > 0 else 0.0


def _ranking(spec: ExperimentSpec, group: list[RungEntry], compared: list[Metric]) -> list[tuple[float, ...]]:
    """Sort keys, smaller first: thresholds missed, non-dominated rank on the `compared` metrics,
    minus the hypervolume contribution within its front (two metrics) or the value (one), then
    the trial's order."""
    losses = np.array([[-_score(m, p.values) for m in compared] for p in group], dtype=float)
    finite = np.where(np.isfinite(losses), losses, -np.inf).max(axis=0, initial=0.0)
    losses = np.where(np.isfinite(losses), losses, finite + 1.0)  # a value not reported: just past the worst
    ranks = nondominated_ranks(losses)
    contribution = -losses[:, 0]
    if losses.shape[1] == 2:
        reference = losses.max(axis=0) + 1e-9 + 0.1 * (losses.max(axis=0) - losses.min(axis=0))
        for rank in set(ranks.tolist()):
            members = np.flatnonzero(ranks == rank)
            members = members[np.lexsort((losses[members, 1], losses[members, 0]))]
            contribution[members] = hypervolume_contributions(losses[members], reference)
    missed = [sum(not _meets(m, p.values) for m in _thresholded(spec)) for p in group]
    return [(missed[i], float(ranks[i]), -float(contribution[i]), group[i].order) for i in range(len(group))]


def _thresholded(spec: ExperimentSpec) -> list[Metric]:
    return [m for m in spec.required_metrics if m.threshold is not None]


def _meets(metric: Metric, values: Mapping[str, float]) -> bool:
    return metric.name not in values or metric.meets(values[metric.name])


def _meets_fixed(spec: ExperimentSpec, entry: RungEntry, fixed: set[str]) -> bool:
    return all(_meets(m, entry.values) for m in _thresholded(spec) if m.name in fixed)


def _score(metric: Metric, values: Mapping[str, float]) -> float:
    """Larger is better; a metric a checkpoint did not report ranks last."""
    value = values.get(metric.name)
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if metric.objective == "maximize" else -value


# -- one answer per checkpoint --------------------------------------------------------------------
def decide(spec: ExperimentSpec, curve: Curve, rung_peers: Sequence[RungEntry] | None, order: int,
           fixed: set[str] | None, noise: Mapping[str, float] | None = None,
           finished: Sequence[Mapping[str, float]] = (), growth: Growth | None = None,
           assignments: Mapping[str, Any] | None = None) -> StopDecision:
    """The answer to a trial's checkpoint number `len(curve)`; `assignments`: its hyperparameters.

    `rung_peers`: the values at this checkpoint number of every trial that reached it before,
    when it is a rung of Pareto early stopping (None otherwise). `fixed`, `noise`, `finished` and
    `growth`: `fixed_metrics`, `checkpoint_noise`, `finished_values` and `growth_to_end` of the
    experiment's curves so far, read only at a rung (elsewhere the trial's own curve decides).
    """
    reasons = convergence_reasons(spec, curve)
    count = len(curve)
    monitor = spec.training_monitor
    if monitor is not None:
        reasons[MAX_CHECKPOINTS_REASON] = count >= monitor.max_checkpoints
    stopping = spec.early_stopping
    if stopping is not None and rung_peers is not None:
        trial = RungEntry(order, curve[-1], assignments or {})
        reasons[PARETO_REASON] = not continues_at_rung(spec, trial, rung_peers, stopping.reduction_factor, fixed,
                                                       noise, finished, growth)
    return StopDecision(any(reasons.values()), reasons)


def is_rung(spec: ExperimentSpec, count: int) -> bool:
    """Whether checkpoint number `count` is a rung of the experiment's Pareto early stopping."""
    stopping, monitor = spec.early_stopping, spec.training_monitor
    if stopping is None or monitor is None:
        return False
    return count in rungs(stopping.min_checkpoints, stopping.reduction_factor, monitor.max_checkpoints)


def fidelity(spec: ExperimentSpec, checkpoints_reached: int) -> float:
    """How much of a full trial a stopped one trained: checkpoints reached / max_checkpoints."""
    if spec.training_monitor is None:
        return 1.0
    return min(1.0, checkpoints_reached / spec.training_monitor.max_checkpoints)


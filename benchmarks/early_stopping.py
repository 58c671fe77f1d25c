"""Pareto early stopping against full training, Optuna's successive halving and SigOpt's convergence.

Problems with learning curves (paretune.stopping explains the trap they hold): a student's size
is fixed from its first epoch, its accuracy climbs along a curve, and large students start slowly
and end best (curves cross); `students6` adds four training hyperparameters that scale the whole
curve down away from their best settings (added in the third round, never tuned on); `lr_pace`
and `lr_pace6` let the learning rate set the pace, so comparable students cross too (added after
the fourth round's rule, to test it). Cost is
counted in trial-epochs (what a GPU spends). Workers are simulated in-process, asynchronously:
each trial trains epoch by epoch, the next suggestion is asked for the moment a worker frees,
and a stopped trial's worker takes one at once, as far as the budget goes: as in the tune loop,
a trial starts only if the budget can finish it, so none is cut at the budget, and what a sweep
leaves unspent is reported.

Arms, each at the same budget of trial-epochs:
- full: paretune's suggest, every trial trained to the end;
- full_reseeded: the same, but every suggestion after the first `2 * workers` drawn with another
  seed: how far a changed path alone moves a seed's ratio to full training. Early stopping changes
  the path at its first stop, so this is the floor its worst seeds are measured against;
- random: random search (SigOpt's `type: random`), every trial trained to the end (the issue's peer);
- pareto: paretune's suggest and the Pareto rung rule (`metadata.early_stopping`, eta 3);
- naive: the same rung rule on every metric (the band of comparable size removed): the trap;
- convergence: SigOpt's convergence criterion (lookback 2, min 3 checkpoints);
- optuna_sha: Optuna's TPE with its SuccessiveHalvingPruner (eta 3) on a scalarised objective.

Run: `nice -n 10 python benchmarks/early_stopping.py --seeds 10 [--problems students,crossing,oom,plateau,students6]
[--workers 2] [--budget 180]`.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from paretune.optimizer import ExperimentSpec, Observation, suggest
from paretune.optimizer.pareto import hypervolume_2d
from paretune.stopping import (Curve, RungEntry, TrialCurve, checkpoint_noise, decide, finished_values, fixed_metrics,
                               growth_to_end, is_rung)

MAX_CHECKPOINTS = 9
REFERENCE = np.array([-0.40, 1.2])  # (-accuracy, size): hypervolume's reference point
SCALARISATION = 0.3  # optuna_sha maximises accuracy - 0.3 * size
RESEEDED_PATH = 10**5  # full_reseeded's seed offset


# The training hyperparameters of `students6` (h0-h3 on [0, 1]): each one's best setting, and
# the share of accuracy lost per squared unit away from it.
TRAINING_OPTIMA = (0.3, 0.7, 0.45, 0.6)
TRAINING_WEIGHTS = (0.6, 0.4, 0.5, 0.3)


@dataclass(frozen=True)
class Problem:
    """A learning-curve problem: `curve(x, y, epoch)` -> accuracy, or None (out of memory), for
    a student of size x at learning rate y; `training` more hyperparameters (h0, h1, ...) scale
    the whole curve down away from their best settings."""

    name: str
    curve: Callable[[float, float, int], float | None]
    threshold: float | None = None
    training: int = 0

    @property
    def parameters(self) -> list[str]:
        return ["x", "y", *(f"h{i}" for i in range(self.training))]

    def accuracy(self, assignments: dict[str, float], epoch: int) -> float | None:
        value = self.curve(assignments["x"], assignments["y"], epoch)
        if value is None:
            return None
        loss = sum(weight * (assignments[f"h{i}"] - best) ** 2
                   for i, (best, weight) in enumerate(zip(TRAINING_OPTIMA[:self.training], TRAINING_WEIGHTS)))
        return value * (1.0 - loss)


def _final(x: float, y: float) -> float:
    """Accuracy after full training: larger students end better, at a learning rate that suits them."""
    return 0.45 + 0.4 * math.sqrt(x) - 0.5 * (y - 0.35 - 0.3 * x) ** 2


def students(x: float, y: float, epoch: int) -> float | None:
    """Saturating curves, slower the larger the student (they cross)."""
    return _final(x, y) * (1 - math.exp(-epoch / (0.6 + 4.0 * x))) / (1 - math.exp(-MAX_CHECKPOINTS / (0.6 + 4.0 * x)))


def crossing(x: float, y: float, epoch: int) -> float | None:
    """Power-law curves: the large students are the worst for most of their training."""
    return _final(x, y) * (epoch / MAX_CHECKPOINTS) ** (0.15 + 1.6 * x)


def oom(x: float, y: float, epoch: int) -> float | None:
    """`students` with an out-of-memory region (large and at a large batch), failing at once."""
    return None if x > 0.75 and y > 0.55 else students(x, y, epoch)


def plateau(x: float, y: float, epoch: int) -> float | None:
    """Added after the rule was set (never tuned on): S-shaped curves that sit near zero for a
    delay that grows with the student (up to 5 of 9 epochs), a final accuracy that saturates
    differently, and a best learning rate that falls as students grow."""
    final = 0.5 + 0.35 * x ** 0.7 - 0.8 * (y - 0.6 + 0.4 * x) ** 2
    delay, width = 1.0 + 4.0 * x, 0.5 + 0.5 * x
    return final / (1 + math.exp(-(epoch - delay) / width)) * (1 + math.exp(-(MAX_CHECKPOINTS - delay) / width))


def lr_pace(x: float, y: float, epoch: int) -> float | None:
    """Added after the fourth round's rule, to test it (never tuned on): `students`' final
    accuracy, but the learning rate sets the pace. A higher one learns faster early, so a peer of
    the same size past the best learning rate (0.35 + 0.3 x) leads at the early rungs and ends
    behind."""
    pace = (0.6 + 4.0 * x) * (1.5 - y)
    return _final(x, y) * (1 - math.exp(-epoch / pace)) / (1 - math.exp(-MAX_CHECKPOINTS / pace))


PROBLEMS = {p.name: p for p in (Problem("students", students, threshold=0.5), Problem("crossing", crossing),
                                Problem("oom", oom), Problem("plateau", plateau),
                                Problem("students6", students, threshold=0.5, training=4),
                                Problem("lr_pace", lr_pace, threshold=0.5),
                                Problem("lr_pace6", lr_pace, threshold=0.5, training=4))}


EARLY_STOPPING = {"type": "pareto", "reduction_factor": 3, "min_checkpoints": 1}  # the documented default


def make_spec(problem: Problem, arm: str, early_stopping: dict[str, Any] = EARLY_STOPPING) -> ExperimentSpec:
    accuracy: dict[str, Any] = {"name": "accuracy", "objective": "maximize"}
    if problem.threshold is not None:
        accuracy["threshold"] = problem.threshold
    definition: dict[str, Any] = {
        "name": f"{problem.name}-{arm}",
        "parameters": [{"name": name, "type": "double", "bounds": {"min": 0.0, "max": 1.0}}
                       for name in problem.parameters],
        "metrics": [accuracy, {"name": "size", "objective": "minimize"}],
        "training_monitor": {"max_checkpoints": MAX_CHECKPOINTS},
    }
    if arm in ("pareto", "naive"):
        definition["metadata"] = {"early_stopping": dict(early_stopping)}
    if arm == "convergence":
        definition["training_monitor"]["early_stopping_criteria"] = [
            {"type": "convergence", "name": "flat", "metric": "accuracy", "lookback_checkpoints": 2, "min_checkpoints": 3}]
    return ExperimentSpec.model_validate(definition)


@dataclass
class Trial:
    id: int
    assignments: dict[str, float]
    curve: list[dict[str, float]] = field(default_factory=list)
    state: str = "running"


@dataclass
class Sweep:
    """One arm's sweep: what was observed, and hypervolume against the cost spent."""

    problem: Problem
    spec: ExperimentSpec
    arm: str
    rng: np.random.Generator
    trials: list[Trial] = field(default_factory=list)
    spent: int = 0
    trajectory: list[tuple[int, float]] = field(default_factory=list)
    stopped_history: str = "fidelity"  # how suggest sees stopped trials (see --stopped-history)

    def values_at(self, trial: Trial, epoch: int) -> dict[str, float] | None:
        accuracy = self.problem.accuracy(trial.assignments, epoch)
        if accuracy is None:
            return None
        return {"accuracy": accuracy + float(self.rng.normal(0, 0.004)), "size": 0.1 + trial.assignments["x"]}

    def hypervolume(self) -> float:
        points = [(-t.curve[-1]["accuracy"], t.curve[-1]["size"]) for t in self.trials if t.state == "completed"
                  and (self.problem.threshold is None or t.curve[-1]["accuracy"] >= self.problem.threshold)]
        return hypervolume_2d(np.array(points).reshape(-1, 2), REFERENCE)

    def history(self) -> list[Observation]:
        """Completed and failed trials, and stopped ones as `stopped_history` says (never as failures)."""
        full = [t.curve for t in self.trials if t.state == "completed"]
        fixed = fixed_metrics(self.spec, [t.curve for t in self.trials]) or set()
        history = []
        for t in self.trials:
            if t.state == "completed":
                history.append(Observation(assignments=t.assignments, values=t.curve[-1]))
            elif t.state == "failed":
                history.append(Observation(assignments=t.assignments, failed=True))
            elif t.state == "stopped" and self.stopped_history == "fidelity":
                history.append(Observation(assignments=t.assignments, values=t.curve[-1],
                                           fidelity=len(t.curve) / MAX_CHECKPOINTS))
            elif t.state == "stopped" and self.stopped_history == "projected":
                history.append(Observation(assignments=t.assignments, values=projected_values(
                    self.spec, t.curve[-1], len(t.curve), full, fixed)))
        return history

    def should_stop(self, trial: Trial) -> bool:
        count = len(trial.curve)
        if self.arm in ("full", "full_reseeded", "random"):
            return count >= MAX_CHECKPOINTS
        curves = [t.curve for t in self.trials]
        fixed = set() if self.arm == "naive" else fixed_metrics(self.spec, curves)
        if not is_rung(self.spec, count):
            return decide(self.spec, trial.curve, None, trial.id, fixed).should_stop
        peers = [RungEntry(t.id, t.curve[count - 1], t.assignments) for t in self.trials
                 if t is not trial and len(t.curve) >= count and t.state != "failed"]
        so_far = [TrialCurve(t.assignments, t.curve) for t in self.trials]
        growth = growth_to_end(self.spec, count, so_far, fixed or set())
        return decide(self.spec, trial.curve, peers, trial.id, fixed, checkpoint_noise(self.spec, curves),
                      finished_values(self.spec, curves), growth, trial.assignments).should_stop


def projected_values(spec: ExperimentSpec, values: dict[str, float], count: int, full_curves: list[Curve],
                     fixed: set[str], neighbours: int = 3) -> dict[str, float]:
    """A stopped trial's likely final values: its `values` after `count` checkpoints, each
    uncertain metric scaled by how it grew from that checkpoint to the end in the `neighbours`
    fully trained trials nearest on the fixed metrics (students of comparable size; the
    difference where a value is not positive); unchanged without such trials."""
    projected = dict(values)
    known = [m.name for m in spec.required_metrics if m.name in fixed and m.name in values]
    references = [c for c in full_curves if len(c) > count and all(name in c[-1] for name in known)]
    if not references:
        return projected
    scale = {name: max(1e-12, float(np.ptp([c[-1][name] for c in references]))) for name in known}
    distance = [sum(((c[-1][name] - values[name]) / scale[name]) ** 2 for name in known) for c in references]
    nearest = [references[i] for i in np.argsort(distance, kind="stable")[:neighbours]]
    for metric in spec.required_metrics:
        name = metric.name
        if name in fixed or name not in projected:
            continue
        pairs = [(c[count - 1][name], c[-1][name]) for c in nearest if name in c[-1] and name in c[count - 1]]
        if not pairs:
            continue
        if projected[name] > 0 and all(then > 0 and final > 0 for then, final in pairs):
            projected[name] *= float(np.median([final / then for then, final in pairs]))  # curves of one shape
        else:
            projected[name] += float(np.median([final - then for then, final in pairs]))
    return projected


def simulate(sweep: Sweep, budget: int, workers: int, new_trial: Callable[[], Trial],
             end_epoch: Callable[[Trial, dict[str, float] | None], None]) -> Sweep:
    """Asynchronous workers, in-process: each worker's clock advances one unit per epoch, and a
    worker whose trial ends takes a new one at once, as far as the budget goes. That is the tune
    loop's rule (`flows/scheduler.py`, `fill_slots`): a trial starts only where the budget, less
    what is spent and what the running trials may still take, holds a whole trial, so no trial is
    cut at the budget. A worker that cannot start one waits: a later stop may free the room.
    `end_epoch` sets a trial's state from the values of its epoch (None: out of memory)."""
    clock: list[tuple[int, int, int]] = []  # (time, worker, trial index)
    idle = list(range(workers))

    def fill(now: int) -> None:
        committed = sum(MAX_CHECKPOINTS - len(t.curve) for t in sweep.trials if t.state == "running")
        while idle and budget - sweep.spent - committed >= MAX_CHECKPOINTS:
            sweep.trials.append(new_trial())
            heapq.heappush(clock, (now + 1, idle.pop(0), len(sweep.trials) - 1))
            committed += MAX_CHECKPOINTS

    fill(0)
    while clock:
        now, worker, index = heapq.heappop(clock)
        trial = sweep.trials[index]
        sweep.spent += 1
        end_epoch(trial, sweep.values_at(trial, len(trial.curve) + 1))
        if trial.state == "running":
            heapq.heappush(clock, (now + 1, worker, index))
            continue
        sweep.trajectory.append((sweep.spent, sweep.hypervolume()))
        idle.append(worker)
        idle.sort()
        fill(now)
    return sweep


def run_paretune(problem: Problem, arm: str, seed: int, budget: int, workers: int,
                 stopped_history: str = "fidelity", early_stopping: dict[str, Any] = EARLY_STOPPING) -> Sweep:
    """paretune's suggest, and the arm's stopping rule answering each epoch's checkpoint."""
    sweep = Sweep(problem, make_spec(problem, arm, early_stopping), arm, np.random.default_rng(seed),
                  stopped_history=stopped_history)
    uniform = np.random.default_rng(seed + 10**6)  # the random arm's own draws
    reseeded_after = 2 * workers if arm == "full_reseeded" else math.inf

    def new_trial() -> Trial:
        if arm == "random":
            return Trial(len(sweep.trials) + 1, {name: float(uniform.random()) for name in problem.parameters})
        pending = [t.assignments for t in sweep.trials if t.state == "running"
                   or (sweep.stopped_history == "pending" and t.state == "stopped")]
        path = seed + RESEEDED_PATH if len(sweep.trials) >= reseeded_after else seed
        (assignments,) = suggest(sweep.spec, sweep.history(), pending, 1, seed=path * 1000 + len(sweep.trials))
        return Trial(len(sweep.trials) + 1, {k: float(v) for k, v in assignments.items()})

    def end_epoch(trial: Trial, values: dict[str, float] | None) -> None:
        if values is None:
            trial.state = "failed"
            return
        trial.curve.append(values)
        if sweep.should_stop(trial):
            trial.state = "completed" if len(trial.curve) >= MAX_CHECKPOINTS else "stopped"

    return simulate(sweep, budget, workers, new_trial, end_epoch)


def run_optuna(problem: Problem, seed: int, budget: int, workers: int) -> Sweep:
    """Optuna's TPE and SuccessiveHalvingPruner on accuracy - 0.3 * size, asked as workers free."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = Sweep(problem, make_spec(problem, "optuna_sha"), "optuna_sha", np.random.default_rng(seed))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    handles: dict[int, Any] = {}

    def new_trial() -> Trial:
        handle = study.ask()
        trial = Trial(len(sweep.trials) + 1, {name: handle.suggest_float(name, 0.0, 1.0) for name in problem.parameters})
        handles[trial.id] = handle
        return trial

    def end_epoch(trial: Trial, values: dict[str, float] | None) -> None:
        handle = handles[trial.id]
        if values is None:
            trial.state = "failed"
            study.tell(handle, state=optuna.trial.TrialState.FAIL)
            return
        trial.curve.append(values)
        score = values["accuracy"] - SCALARISATION * values["size"]
        handle.report(score, len(trial.curve))
        if len(trial.curve) >= MAX_CHECKPOINTS:
            trial.state = "completed"
            study.tell(handle, score)
        elif handle.should_prune():
            trial.state = "stopped"
            study.tell(handle, state=optuna.trial.TrialState.PRUNED)

    return simulate(sweep, budget, workers, new_trial, end_epoch)


def hypervolume_at(trajectory: list[tuple[int, float]], cost: float) -> float:
    return max([hv for spent, hv in trajectory if spent <= cost], default=0.0)


def cost_to_reach(trajectory: list[tuple[int, float]], target: float) -> float:
    return next((spent for spent, hv in trajectory if hv >= target - 1e-12), math.inf)


ARMS = ("full", "full_reseeded", "random", "pareto", "naive", "convergence", "optuna_sha")


def stopped_frontier_candidates(sweep: Sweep) -> int:
    """Stopped trials that, trained to the end (noise aside), would meet the threshold and that no
    completed trial would dominate: the frontier points stopping cost."""
    finals = [(t.curve[-1]["accuracy"], t.curve[-1]["size"]) for t in sweep.trials if t.state == "completed"]
    count = 0
    for t in sweep.trials:
        if t.state == "stopped":
            accuracy = sweep.problem.accuracy(t.assignments, MAX_CHECKPOINTS)
            size = t.curve[-1]["size"]
            feasible = sweep.problem.threshold is None or accuracy >= sweep.problem.threshold
            count += feasible and not any(a >= accuracy and z <= size for a, z in finals)
    return count


def seed_rows(sweeps: dict[str, Sweep], budget: int) -> dict[str, dict[str, float]]:
    """One seed's figures per arm: hypervolume at the budget and its ratio to full training's at
    equal cost (also at half and three quarters of the budget, and averaged over every cost in the
    budget's second half: full training's workers finish together at the budget, which favours
    it there and only there), the cost at which full training's
    and random search's final hypervolumes are reached, and where the budget went."""
    def at(arm: str, share: float) -> float:
        return hypervolume_at(sweeps[arm].trajectory, budget * share)

    def ratio(arm: str, share: float) -> float:
        return at(arm, share) / at("full", share) if at("full", share) else math.nan

    rows = {}
    for arm, sweep in sweeps.items():
        rows[arm] = {"hv": at(arm, 1.0), **{f"ratio_{share}": ratio(arm, share) for share in (0.5, 0.75, 1.0)},
                     "ratio_second_half": float(np.nanmean([ratio(arm, cost / budget)
                                                         for cost in range(budget // 2, budget + 1)])),
                     "cost_to_full": cost_to_reach(sweep.trajectory, at("full", 1.0)) / budget,
                     "cost_to_random": cost_to_reach(sweep.trajectory, at("random", 1.0)) / budget
                     if "random" in sweeps else math.nan,
                     "trials": len(sweep.trials), "stopped": sum(t.state == "stopped" for t in sweep.trials),
                     "lost": stopped_frontier_candidates(sweep),
                     "unspent": budget - sweep.spent}
    return rows


COLUMNS = [("median HV", "hv", ".4f"), ("med/full", "ratio_1.0", ".3f"), ("worst/full", "ratio_1.0", "worst"),
           ("med/full at 1/2", "ratio_0.5", ".3f"), ("at 3/4", "ratio_0.75", ".3f"),
           ("mean over 2nd half", "ratio_second_half", ".3f"), ("worst", "ratio_second_half", "worst"),
           ("cost to full HV", "cost_to_full", ".2f"), ("cost to random HV", "cost_to_random", ".2f"),
           ("trials", "trials", ".0f"), ("stopped", "stopped", ".0f"), ("of them frontier", "lost", ".0f"),
           ("unspent epochs", "unspent", ".0f")]


def print_table(name: str, rows: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """Medians over seeds (the worst seed where the column says so)."""
    print(f"\n{name}: budget {args.budget} trial-epochs, {args.workers} workers, {args.seeds} seeds")
    print(f"{'arm':<12}" + "".join(f" {title:>{max(8, len(title))}}" for title, _, _ in COLUMNS))
    for arm, seeds in rows.items():
        cells = []
        for title, key, form in COLUMNS:
            values = [s[key] for s in seeds]
            value = min(values) if form == "worst" else statistics.median(values)
            cells.append(f" {value:>{max(8, len(title))}{'.3f' if form == 'worst' else form}}")
        print(f"{arm:<12}" + "".join(cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--budget", type=int, default=20 * MAX_CHECKPOINTS, help="trial-epochs per sweep")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="write every seed's figures here")
    parser.add_argument("--stopped-history", choices=("fidelity", "projected", "pending"), default="fidelity",
                        help="stopped trials reach suggest as lower-fidelity observations (paretune's way), at "
                             "their projected final values, or only kept from being suggested again (as if pending)")
    parser.add_argument("--reduction-factor", type=int, default=EARLY_STOPPING["reduction_factor"])
    parser.add_argument("--min-checkpoints", type=int, default=EARLY_STOPPING["min_checkpoints"])
    args = parser.parse_args(argv)
    early_stopping = {**EARLY_STOPPING, "reduction_factor": args.reduction_factor,
                      "min_checkpoints": args.min_checkpoints}
    arms = args.arms.split(",")
    table: dict[str, Any] = {}
    for name in args.problems.split(","):
        problem = PROBLEMS[name]
        rows: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
        for seed in range(args.seeds):
            began = time.perf_counter()
            sweeps = {arm: run_optuna(problem, seed, args.budget, args.workers) if arm == "optuna_sha"
                      else run_paretune(problem, arm, seed, args.budget, args.workers, args.stopped_history, early_stopping)
                      for arm in arms}
            rows_of = seed_rows(sweeps, args.budget)
            for arm in arms:
                rows[arm].append(rows_of[arm])
            print(f"{name} seed {seed}: " + "  ".join(f"{arm} {rows[arm][-1]['hv']:.4f}" for arm in arms)
                  + f"  ({time.perf_counter() - began:.0f} s)", flush=True)
        table[name] = rows
        print_table(name, rows, args)
    if args.json:
        with open(args.json, "w") as output:
            json.dump(table, output, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Milliseconds per `suggest` call at 500, 2,000, 10^4 and 10^5 observations (9 mixed
parameters, 2 optimized metrics), against Optuna's multivariate TPESampler asked on the same
history.

    .venv/bin/python -m benchmarks.optimizer_speed [--sizes 500,2000,10000,100000] [--repeats 5]

The history is random assignments with synthetic metric values (a few failures); each timing
is the median of `--repeats` calls with different seeds, the i-th call on the first size + i
observations (five calls span one cycle of the optimizer's optimistic step, which skips the
posterior draws, so the median is an ordinary step), after one untimed call on the same
history (one-time costs, such as the allocator's first growth, are not what a long-running
server pays; each peer gets one), in CPU time of this process (`time.process_time`, one BLAS
thread) so that a loaded shared machine inflates it less. The ratio to Optuna's TPESampler
(`multivariate=True`), measured in the same run with the two optimizers' calls alternating (so
a machine whose pace changes during the run slows both alike), and the machine's load average
are printed with it: on a shared machine, compare ratios. Optuna's history is loaded into one
study per size (`add_trials`), and each repeat asks it with a fresh sampler of its own seed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from paretune.optimizer import ExperimentSpec, Observation, suggest  # noqa: E402

SPEC = ExperimentSpec.model_validate({
    "name": "speed",
    "parameters": [
        *({"name": f"x{i}", "type": "double", "bounds": {"min": 0.0, "max": 1.0}} for i in range(4)),
        {"name": "lr", "type": "double", "bounds": {"min": 1e-5, "max": 1e-1}, "transformation": "log"},
        {"name": "layers", "type": "int", "bounds": {"min": 1, "max": 12}},
        {"name": "batch", "type": "int", "bounds": {"min": 8, "max": 256}},
        {"name": "optimizer", "type": "categorical", "categorical_values": ["adamw", "sgd", "lion"]},
        {"name": "width", "type": "categorical", "categorical_values": ["128", "256", "512", "768"]},
    ],
    "metrics": [{"name": "f1", "objective": "minimize"}, {"name": "f2", "objective": "minimize"}],
})


def random_history(size: int, seed: int) -> list[Observation]:
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(size):
        a = {f"x{i}": float(rng.uniform()) for i in range(4)}
        a |= {"lr": float(math.exp(rng.uniform(math.log(1e-5), math.log(1e-1)))),
              "layers": int(rng.integers(1, 13)), "batch": int(rng.integers(8, 257)),
              "optimizer": str(rng.choice(["adamw", "sgd", "lion"])), "width": str(rng.choice(["128", "256", "512", "768"]))}
        if rng.uniform() < 0.05:
            history.append(Observation(assignments=a, failed=True))
        else:
            g = 1 + sum(a[f"x{i}"] for i in range(1, 4))
            history.append(Observation(assignments=a, values={"f1": a["x0"], "f2": g * (1 - math.sqrt(a["x0"] / g))}))
    return history


SERVER_SPEC = ExperimentSpec.model_validate({
    "name": "server-load",
    "parameters": [*({"name": f"x{i}", "type": "double", "bounds": {"min": 0, "max": 1}} for i in range(3)),
                   {"name": "depth", "type": "int", "bounds": {"min": 1, "max": 8}}],
    "metrics": [{"name": "accuracy", "objective": "maximize"}, {"name": "size", "objective": "minimize"}],
})


def server_history(size: int, seed: int) -> list[Observation]:
    """`benchmarks/server_load.py`'s long history (its SQL, in Python): accuracy and size both
    grow with x0 and depth, so many points trade one for the other and the front grows with
    the history (about 4,000 points at 10^5), unlike `random_history`'s."""
    rng = np.random.default_rng(seed)
    history = []
    for i in range(size):
        a = {"x0": float(rng.uniform()), "x1": float(rng.uniform()), "x2": float(rng.uniform()), "depth": 1 + i % 8}
        size_value = a["x0"] + a["depth"] / 8
        history.append(Observation(assignments=a, values={"accuracy": size_value - (a["x1"] - 0.5) ** 2,
                                                          "size": size_value}))
    return history


def time_paretune(spec: ExperimentSpec, history: list[Observation], size: int, repeats: int) -> float:
    """`history` holds `size + repeats` observations; call i sees the first `size + i`."""
    return _median_ms([_paretune_call(spec, history, size, seed) for seed in [repeats, *range(repeats)]])


def time_against_optuna(history: list[Observation], size: int, repeats: int) -> tuple[float, float]:
    """paretune's and Optuna's medians on `SPEC`, their calls alternating (paretune's i-th,
    then Optuna's), so that both see the machine at the same speed: run one after the other,
    a shared machine's change of pace between them moved the ratio by a quarter."""
    ask_optuna = _optuna_asker(history[:size])
    ours, theirs = [], []
    for seed in [repeats, *range(repeats)]:
        ours.append(_paretune_call(SPEC, history, size, seed))
        theirs.append(ask_optuna(seed))
    return _median_ms(ours), _median_ms(theirs)


def _paretune_call(spec: ExperimentSpec, history: list[Observation], size: int, seed: int) -> float:
    start = time.process_time()
    suggest(spec, history[: size + seed], [], 1, seed=seed)
    return time.process_time() - start


def _median_ms(timings: list[float]) -> float:
    """The median of the timings after the first (the warm-up call: see the module docstring)."""
    return 1000 * statistics.median(timings[1:])


def _optuna_asker(history: list[Observation]) -> Callable[[int], float]:
    """A study loaded with `history`, and a function that asks it once with a fresh sampler of
    the given seed and returns the CPU seconds the ask took."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore")
    distributions = {}
    for p in SPEC.parameters:
        if p.type == "categorical":
            distributions[p.name] = optuna.distributions.CategoricalDistribution(list(p.categorical_values))
        elif p.type == "int":
            distributions[p.name] = optuna.distributions.IntDistribution(int(p.bounds.min), int(p.bounds.max))
        else:
            distributions[p.name] = optuna.distributions.FloatDistribution(p.bounds.min, p.bounds.max, log=p.is_log)
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trials([optuna.trial.create_trial(
        params=o.assignments, distributions=distributions, values=None if o.failed else [o.values["f1"], o.values["f2"]],
        state=optuna.trial.TrialState.FAIL if o.failed else optuna.trial.TrialState.COMPLETE) for o in history])

    def ask(seed: int) -> float:
        study.sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        start = time.process_time()
        trial = study.ask()
        for name, distribution in distributions.items():
            trial._suggest(name, distribution)
        elapsed = time.process_time() - start
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # one failed trial more per repeat: negligible
        return elapsed

    return ask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="500,2000,10000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print("| observations | paretune ms/suggest | Optuna TPESampler (multivariate) ms/suggest | paretune / Optuna "
          "| paretune ms/suggest, server_load's history | load average |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        history = random_history(size + args.repeats, seed=size)
        ours, theirs = time_against_optuna(history, size, args.repeats)
        served = time_paretune(SERVER_SPEC, server_history(size + args.repeats, seed=size), size, args.repeats)
        print(f"| {size} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} | {served:.1f} | {os.getloadavg()[0]:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()

"""Hypervolume after a fixed budget: paretune's `suggest` against the peers users would pick.

    nohup .venv/bin/python -m benchmarks.optimizer_quality --problems all --methods all \
        --modes sequential,async8 --jobs 2 > quality.log 2>&1 &

Seeds per method by default: 20 for paretune, 10 for the slow, strong peers (sigoptlite and
Optuna's GPSampler), 5 for the others (`--seeds N` gives every method N). Each run appends one
JSON line to the first `--results` file (default benchmarks/.cache/quality.jsonl, an ignored
folder); runs already in any `--results` file are skipped, so an interrupted grid resumes and
slow peers can run in a second process with their own file. The table reports, per problem,
mode and method: the median, the 10th percentile and the worst seed of the hypervolume
fraction, with seconds per suggestion; a summary compares paretune with its strongest peers.

Modes: `sequential` (one trial at a time) and `async8` (8 workers; each time a trial ends,
one new suggestion is asked for with the other 7 in flight passed as pending). Trial durations
are drawn uniformly in [0.5, 1.5) so trials end out of order.

Methods: paretune; Optuna's TPESampler univariate (`tpe`) and `multivariate=True` (`tpe_mv`),
both with `constraints_func` where the problem has thresholds and `constant_liar=True` in
async mode; NSGAIISampler (`nsga2`), GPSampler (`gp`), RandomSampler (`random`); SigOpt's own
optimizer through sigoptlite (`sigopt`, sequential only: sigoptlite refuses
parallel_bandwidth > 1; run by benchmarks/sigoptlite_driver.py in the Python 3.10 environment
that `make sigopt-env` builds, or the one given by `--sigopt-python`).

SigOpt's definition keys: conditionals reach Optuna define-by-run (the conditionals first, then
the parameters they make active); linear constraints join Optuna's `constraints_func`, and a
point that breaks one never counts; Optuna has no cheaper tasks, so on a multitask problem it
runs every trial at the full task. Only full-task observations count for quality.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # runs are parallel processes; keep BLAS to one core each

import numpy as np  # noqa: E402

from benchmarks.problems import PROBLEMS, Problem  # noqa: E402

ROOT = Path(__file__).resolve().parent
METHODS = ("paretune", "tpe", "tpe_mv", "nsga2", "gp", "random", "sigopt")
MODES = {"sequential": 1, "async8": 8}
SEEDS = {"paretune": 20, "sigopt": 10, "gp": 10}  # every other method: DEFAULT_SEEDS
DEFAULT_SEEDS = 5
DEFAULT_SIGOPT_PYTHON = ROOT / ".sigopt-venv" / "bin" / "python"


# -- the optimizers behind one ask/tell interface -------------------------------------------------

class Paretune:
    def __init__(self, problem: Problem, seed: int):
        from paretune.optimizer import ExperimentSpec

        self.spec = ExperimentSpec.model_validate(problem.spec)
        self.failure_reason = problem.failure_reason
        self.seed = seed
        self.history: list = []
        self.pending: dict[int, tuple[dict[str, Any], str | None]] = {}
        self.asked = 0

    def ask(self) -> tuple[int, dict[str, Any], str | None]:
        from paretune.optimizer import propose

        [proposal] = propose(self.spec, self.history, [a for a, _ in self.pending.values()], 1,
                             seed=self.seed * 100_003 + self.asked)
        token, self.asked = self.asked, self.asked + 1
        self.pending[token] = (proposal.assignments, proposal.task)
        return token, proposal.assignments, proposal.task

    def tell(self, token: int, values: dict[str, float] | None) -> None:
        from paretune.optimizer import Observation

        assignments, task = self.pending.pop(token)
        failed = values is None
        reason = self.failure_reason(assignments) if failed and self.failure_reason else None
        self.history.append(Observation(assignments=assignments, values=values, failed=failed, failure_reason=reason,
                                        task=task))

    def close(self) -> None:
        pass


class OptunaMethod:
    def __init__(self, problem: Problem, seed: int, method: str, workers: int):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)  # constraints_func, as the issue asks
        self.problem = problem
        thresholded = [m for m in problem.spec["metrics"] if m.get("threshold") is not None]
        constrained = thresholded or problem.spec.get("linear_constraints")
        constraints = _constraints_func if constrained else None
        samplers = {
            "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constraints_func=constraints,
                                                      constant_liar=workers > 1),
            "tpe_mv": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, constraints_func=constraints,
                                                         constant_liar=workers > 1),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints),
            "gp": lambda: optuna.samplers.GPSampler(seed=seed, constraints_func=constraints),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        directions = [m.get("objective", "maximize") for m in problem.optimized]
        self.study = optuna.create_study(directions=directions, sampler=samplers[method]())
        self.trials: dict[int, Any] = {}
        self.assignments: dict[int, dict[str, Any]] = {}

    def ask(self) -> tuple[int, dict[str, Any], str | None]:
        """Define-by-run: the conditionals first, then only the parameters they make active.
        Optuna has no cheaper tasks: every trial runs at the full one."""
        trial = self.study.ask()
        assignments = {}
        for conditional in self.problem.spec.get("conditionals", ()):
            assignments[conditional["name"]] = trial.suggest_categorical(conditional["name"], conditional["values"])
        for p in self.problem.spec["parameters"]:
            conditions = p.get("conditions", {})
            if any(assignments[name] not in ([v] if isinstance(v, str) else v) for name, v in conditions.items()):
                continue
            if p["type"] == "categorical":
                assignments[p["name"]] = trial.suggest_categorical(p["name"], p["categorical_values"])
            elif p["type"] == "int":
                assignments[p["name"]] = trial.suggest_int(p["name"], int(p["bounds"]["min"]), int(p["bounds"]["max"]))
            else:
                assignments[p["name"]] = trial.suggest_float(p["name"], p["bounds"]["min"], p["bounds"]["max"],
                                                             log=p.get("transformation") == "log")
        self.trials[trial.number] = trial
        self.assignments[trial.number] = assignments
        return trial.number, assignments, full_task(self.problem)

    def tell(self, token: int, values: dict[str, float] | None) -> None:
        import optuna

        trial = self.trials.pop(token)
        assignments = self.assignments.pop(token)
        if values is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        violations = linear_violations(self.problem, assignments)
        for metric in self.problem.spec["metrics"]:
            if metric.get("threshold") is not None:
                value, threshold = values[metric["name"]], metric["threshold"]
                violations.append(threshold - value if metric.get("objective") == "maximize" else value - threshold)
        trial.set_user_attr("constraints", violations)
        self.study.tell(trial, [values[m["name"]] for m in self.problem.optimized])

    def close(self) -> None:
        pass


def _constraints_func(trial: Any) -> list[float]:
    return trial.user_attrs["constraints"]


def linear_violations(problem: Problem, assignments: dict[str, Any]) -> list[float]:
    """Each linear constraint as Optuna's constraint value (<= 0 when it holds)."""
    violations = []
    for constraint in problem.spec.get("linear_constraints", ()):
        total = sum(term["weight"] * assignments[term["name"]] for term in constraint["terms"])
        violations.append(constraint["threshold"] - total if constraint["type"] == "greater_than"
                          else total - constraint["threshold"])
    return violations


def full_task(problem: Problem) -> str | None:
    return next((t["name"] for t in problem.spec.get("tasks", ()) if t["cost"] == 1), None)


class SigOpt:
    def __init__(self, problem: Problem, seed: int, budget: int, python: Path):
        self.process = subprocess.Popen([str(python), str(ROOT / "sigoptlite_driver.py")], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        spec = dict(problem.spec, observation_budget=int(problem.budget_units or budget))
        self._call({"op": "create", "spec": spec, "seed": seed})

    def _call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("sigoptlite driver exited")
        return json.loads(line)

    def ask(self) -> tuple[str, dict[str, Any], str | None]:
        reply = self._call({"op": "suggest"})
        return reply["id"], reply["assignments"], reply.get("task")

    def tell(self, token: str, values: dict[str, float] | None) -> None:
        self._call({"op": "observe", "id": token, "values": values})

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait()


def make_method(name: str, problem: Problem, seed: int, budget: int, workers: int, sigopt_python: Path):
    if name == "paretune":
        return Paretune(problem, seed)
    if name == "sigopt":
        return SigOpt(problem, seed, budget, sigopt_python)
    return OptunaMethod(problem, seed, name, workers)


# -- one run --------------------------------------------------------------------------------------

def run_one(problem_name: str, method_name: str, mode: str, seed: int, budget: int, sigopt_python: str) -> dict[str, Any]:
    """Run one optimizer on one problem; trials end in simulated time so workers overlap. The
    budget is `budget` trials, or the problem's `budget_units` of cost (multitask)."""
    problem = PROBLEMS[problem_name]
    workers = MODES[mode]
    clock_rng = np.random.default_rng([seed, workers])
    noise_rng = np.random.default_rng([seed, 7])
    units = problem.budget_units if problem.budget_units is not None else float(budget)
    method = make_method(method_name, problem, seed, budget, workers, Path(sigopt_python))
    in_flight: list[tuple[float, int, Any, dict[str, Any], str | None]] = []
    evaluated: list[dict[str, Any]] = []
    asked, spent, now, ask_seconds = 0, 0.0, 0.0, 0.0

    def launch() -> None:
        nonlocal asked, spent, ask_seconds
        start = time.perf_counter()
        token, assignments, task = method.ask()
        ask_seconds += time.perf_counter() - start
        duration = float(clock_rng.uniform(0.5, 1.5)) * problem.task_cost(task)
        heapq.heappush(in_flight, (now + duration, asked, token, assignments, task))
        asked += 1
        spent += problem.task_cost(task)

    try:
        while len(in_flight) < workers and spent < units:
            launch()
        while in_flight:
            now, _, token, assignments, task = heapq.heappop(in_flight)
            method.tell(token, problem.observe(assignments, noise_rng, task))
            if problem.task_cost(task) == 1.0:
                evaluated.append(assignments)
            if spent < units:
                launch()
    finally:
        method.close()
    return {"problem": problem_name, "method": method_name, "mode": mode, "seed": seed, "budget": budget,
            "hv": problem.hypervolume_fraction(evaluated), "ms_per_suggest": 1000 * ask_seconds / asked,
            "trials": asked}


# -- grid, resume, table --------------------------------------------------------------------------

def _key(record: dict[str, Any]) -> tuple:
    return record["problem"], record["method"], record["mode"], record["seed"], record["budget"]


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(hv_by_seed: dict[int, float]) -> dict[str, float]:
    """Median, 10th percentile (linear interpolation) and the worst seed of one cell."""
    values = np.array(list(hv_by_seed.values()))
    worst_seed = min(hv_by_seed, key=hv_by_seed.get)
    return {"runs": len(values), "median": float(np.median(values)), "p10": float(np.percentile(values, 10)),
            "worst": float(values.min()), "worst_seed": worst_seed}


def cells(records: list[dict[str, Any]], budget: int) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(problem, mode, method) -> summary, with the median milliseconds per suggestion."""
    grouped: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in records:
        if r["budget"] == budget:
            grouped.setdefault((r["problem"], r["mode"], r["method"]), {})[r["seed"]] = r
    return {key: summarize({seed: r["hv"] for seed, r in runs.items()})
            | {"ms": statistics.median(r["ms_per_suggest"] for r in runs.values())}
            for key, runs in grouped.items()}


def table(records: list[dict[str, Any]], problems: list[str], methods: list[str], modes: list[str], budget: int) -> str:
    summary = cells(records, budget)
    lines = ["| problem | mode | method | seeds | median HV | p10 | worst (seed) | ms/suggest |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for problem in problems:
        for mode in modes:
            for method in methods:
                cell = summary.get((problem, mode, method))
                if cell:
                    lines.append(f"| {problem} | {mode} | {method} | {cell['runs']} | {cell['median']:.3f} | "
                                 f"{cell['p10']:.3f} | {cell['worst']:.3f} ({cell['worst_seed']}) | {cell['ms']:.1f} |")
    return "\n".join(lines)


def goals(records: list[dict[str, Any]], problems: list[str], budget: int) -> str:
    """paretune against the issue's goals: sigoptlite's and GPSampler's medians, its own
    10th percentile against its median, and 8 in flight against sequential."""
    summary = cells(records, budget)

    def median(problem: str, mode: str, method: str) -> str:
        cell = summary.get((problem, mode, method))
        return f"{cell['median']:.3f} ({cell['runs']})" if cell else "—"

    def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key_a: str = "median") -> str:
        return f"{a[key_a] / b['median']:.2f}" if a and b and b["median"] > 0 else "—"

    lines = ["| problem | paretune seq (seeds) | p10 / median | async8 / seq | sigoptlite seq (seeds) | "
             "paretune / sigoptlite | GPSampler seq (seeds) | paretune / GPSampler |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for problem in problems:
        seq = summary.get((problem, "sequential", "paretune"))
        async8 = summary.get((problem, "async8", "paretune"))
        lines.append(f"| {problem} | {median(problem, 'sequential', 'paretune')} | {ratio(seq, seq, 'p10')} | "
                     f"{ratio(async8, seq)} | {median(problem, 'sequential', 'sigopt')} | "
                     f"{ratio(seq, summary.get((problem, 'sequential', 'sigopt')))} | "
                     f"{median(problem, 'sequential', 'gp')} | {ratio(seq, summary.get((problem, 'sequential', 'gp')))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default="all", help=f"comma list of {', '.join(PROBLEMS)} or 'all'")
    parser.add_argument("--methods", default="all", help=f"comma list of {', '.join(METHODS)} or 'all'")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"seeds 0..N-1 for every method (default: {SEEDS}, {DEFAULT_SEEDS} for the others)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--modes", default="sequential,async8")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--results", type=Path, action="append",
                        help="JSON lines file: the first gets new runs, all are read (default .cache/quality.jsonl)")
    parser.add_argument("--sigopt-python", type=Path, default=DEFAULT_SIGOPT_PYTHON)
    parser.add_argument("--table-only", action="store_true", help="print the table from --results, run nothing")
    args = parser.parse_args(argv)

    problems = list(PROBLEMS) if args.problems == "all" else args.problems.split(",")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    modes = args.modes.split(",")
    if "sigopt" in methods and not args.sigopt_python.exists():
        print(f"sigoptlite is not available ({args.sigopt_python} missing): the `sigopt` column is skipped. "
              "Build it with `make sigopt-env` (SIGOPT_PYTHON=path/to/python3.10 if it is not on the PATH).",
              file=sys.stderr)
        methods.remove("sigopt")

    results = args.results or [ROOT / ".cache" / "quality.jsonl"]
    results[0].parent.mkdir(parents=True, exist_ok=True)
    records = [r for path in results for r in load(path)]
    done = {_key(r) for r in records}
    if "sigopt" in methods and any(MODES[mode] > 1 for mode in modes):
        print("sigoptlite refuses parallel_bandwidth > 1: the `sigopt` column has sequential runs only.",
              file=sys.stderr)

    def seeds(method: str) -> range:
        count = args.seeds if args.seeds is not None else SEEDS.get(method, DEFAULT_SEEDS)
        return range(args.first_seed, args.first_seed + count)

    grid = [(p, m, mode, s) for p in problems for mode in modes for m in methods for s in seeds(m)
            if (p, m, mode, s, args.budget) not in done and not (m == "sigopt" and MODES[mode] > 1)]
    if not args.table_only and grid:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool, results[0].open("a") as out:
            futures = [pool.submit(run_one, p, m, mode, s, args.budget, str(args.sigopt_python))
                       for p, m, mode, s in grid]
            for future in as_completed(futures):
                record = future.result()
                out.write(json.dumps(record) + "\n")
                out.flush()
                records.append(record)
                print(f"{record['problem']:9s} {record['mode']:10s} {record['method']:9s} seed {record['seed']}: "
                      f"hv {record['hv']:.3f} ({record['ms_per_suggest']:.1f} ms/suggest)", flush=True)
    print(table(records, problems, methods, modes, args.budget))
    print()
    print(goals(records, problems, args.budget))

if __name__ == "__main__":
    main()

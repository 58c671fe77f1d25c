"""Helpers for tests that run real sweeps in other processes and count what really ran."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_spec(folder: Path, name: str, budget: int, bandwidth: int, objective: str,
               trial: dict[str, Any] | None = None, duration: tuple[float, float] = (0.05, 0.2)) -> str:
    spec = {
        "name": name,
        "parameters": [{"name": "duration", "type": "double", "bounds": {"min": duration[0], "max": duration[1]}}],
        "metrics": [
            {"name": "loss", "objective": "minimize", "strategy": "optimize"},
            {"name": "cost", "objective": "minimize", "strategy": "optimize"},
        ],
        "observation_budget": budget,
        "parallel_bandwidth": bandwidth,
        "metadata": {"objective": objective, "trial": trial or {}},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@dataclass(frozen=True)
class SideLog:
    """What `tests.objectives:logged_sleep` wrote: starts (suggestion -> pids) and ends."""

    starts: dict[int, list[int]]
    ends: Counter[int]

    @classmethod
    def read(cls, path: Path) -> SideLog:
        starts: dict[int, list[int]] = {}
        ends: Counter[int] = Counter()
        if path.exists():
            for line in path.read_text().splitlines():
                kind, suggestion, *pid = line.split()
                if kind == "start":
                    starts.setdefault(int(suggestion), []).append(int(pid[0]))
                else:
                    ends[int(suggestion)] += 1
        return cls(starts, ends)

    def running(self) -> dict[int, int]:
        """Trials started and not ended: suggestion -> pid."""
        return {s: pids[-1] for s, pids in self.starts.items() if not self.ends[s]}

    def started_more_than_once(self) -> list[int]:
        return sorted(s for s, pids in self.starts.items() if len(pids) > 1)


def flow_env(prefect_api: str | None, **extra: str) -> dict[str, str]:
    env = os.environ | {"PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | extra
    if prefect_api is None:
        env.pop("PREFECT_API_URL", None)
    else:
        env["PREFECT_API_URL"] = prefect_api
    return env


def start_flow(*arguments: str, env: dict[str, str], log: Path, own_group: bool = False) -> subprocess.Popen[bytes]:
    """`python -m paretune.flows.tune ARGUMENTS`, its output to `log`; `own_group`: as a terminal's foreground job."""
    with open(log, "ab") as output:
        return subprocess.Popen([sys.executable, "-m", "paretune.flows.tune", *arguments], cwd=ROOT, env=env,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=own_group)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_alive(processes: list[psutil.Process], within_s: float) -> list[psutil.Process]:
    """The processes that have not ended `within_s` seconds from now (zombies count as ended)."""
    deadline = time.monotonic() + within_s
    alive = processes
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return alive


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)

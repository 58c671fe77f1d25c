"""Where a run runs: host, device and the code's git commit, captured by the process running it.

Trials capture it on their Dask worker (the GPU and host that actually trained), standalone runs
in their own process.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys

from paretune.storage.records import RunEnvironment


def capture_environment() -> RunEnvironment:
    """Host, device and code version of this process, for the runs it records."""
    commit, note = _git_commit(os.getcwd())
    return RunEnvironment(socket.gethostname(), device_name(), commit, note)


@functools.lru_cache(maxsize=8)
def _git_commit(folder: str) -> tuple[str | None, str | None]:
    """The commit checked out in `folder`, or None and why (cached: one lookup per process)."""
    if shutil.which("git") is None:
        return None, "git is not installed"
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"git failed: {error}"
    if result.returncode != 0:
        return None, f"{folder} is not in a git repository"
    return result.stdout.strip() or None, None


def device_name() -> str:
    """The accelerator this process would train on; never imports torch just to ask."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    if torch is None and shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") != "":
        try:
            names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True, timeout=5).stdout.splitlines()
        except (OSError, subprocess.TimeoutExpired):
            names = []
        if names and names[0].strip():
            return f"cuda ({names[0].strip()})"
    return "cpu"

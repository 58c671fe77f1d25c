"""Stop a child process when its parent dies, however the parent dies.

    python -m paretune.flows.orphan_guard PARENT_PID CHILD_PID [--group]

A SIGKILLed process cannot clean up, and its children live on, reparented. This guard, started
by the parent beside the child, watches for the moment it is reparented itself (its parent is
gone) and kills the child (with `--group`, the child's whole process group: the child leads a
session of its own). Standard library only, so it starts in a few milliseconds.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.2


def guard(parent_pid: int, child_pid: int, group: bool) -> None:
    while os.getppid() == parent_pid:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return  # the child ended first: nothing left to guard
        time.sleep(POLL_S)
    try:
        if group:
            os.killpg(child_pid, signal.SIGKILL)
        else:
            os.kill(child_pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    guard(int(sys.argv[1]), int(sys.argv[2]), "--group" in sys.argv[3:])

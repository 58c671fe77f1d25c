"""Dask preload for the flow's local workers: a terminal's Ctrl-C is the flow's to handle.

Ctrl-C signals the terminal's whole process group, local worker processes included. A worker
that died of it would turn its trial into "worker lost"; ignoring it lets the flow cancel its
trials in order (flows.scheduler.StopWatcher) and close the workers itself.
"""

from __future__ import annotations

import signal

import distributed


def dask_setup(worker: distributed.Worker) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

"""Dask preload for the flow's local workers: quiet, and deaf to the terminal's Ctrl-C.

- Ctrl-C signals the terminal's whole process group, local worker processes included. A worker
  that died of it would turn its trial into "worker lost"; ignoring it lets the flow cancel its
  trials in order (flows.scheduler.StopWatcher) and close the workers itself.
- Dask's INFO records (a worker starting, stopping, connecting) would drown the sweep's own lines;
  its warnings and errors still show.
"""

from __future__ import annotations

import logging
import signal

import distributed


def dask_setup(worker: distributed.Worker) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed").setLevel(logging.WARNING)

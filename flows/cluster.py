"""Where trials run: an existing Dask scheduler, one worker per local GPU, or local CPU processes.

Every choice yields a `distributed.Client`; the tune flow holds it for the length of a run, so
a local cluster lives exactly as long as the flow that needs it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import dask
import distributed

# A local cluster's scheduler fails a trial on its first lost worker instead of running it again
# elsewhere (Dask's default retries it up to three times): a second attempt would find its claim
# taken (paretune.trial) and only delay the news that the trial was lost.
LOCAL_SCHEDULER_CONFIG = {"distributed.scheduler.allowed-failures": 0}
# Its nannies restart a worker that died, however often; without this, a worker still restarting
# 15 s after its first death had its nanny closed for good (Dask's default lost-worker timeout),
# and a sweep whose workers died repeatedly (out-of-memory kills) was left with none.
# Its worker processes start with Dask's own logging at WARNING (set before they import Dask, so
# even the preload's start-up INFO lines stay out of the terminal and the Prefect logs).
LOCAL_CLUSTER_CONFIG = {"distributed.deploy.lost-worker-timeout": "365 days",
                        "distributed.nanny.pre-spawn-environ.DASK_LOGGING__DISTRIBUTED": "warning"}
logger = logging.getLogger(__name__)


def visible_gpu_count() -> int:
    """GPUs this process could use: torch's count, else nvidia-smi's, else 0."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, check=False)
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def dask_cuda_available() -> bool:
    """Whether the `gpu` extra (dask-cuda) is installed, without importing it."""
    return importlib.util.find_spec("dask_cuda") is not None


def local_cluster(n_workers: int, threads_per_worker: int = 1) -> distributed.SpecCluster:
    """GPUs present and `dask_cuda` installed: a `LocalCUDACluster` (one single-threaded worker per
    visible GPU, `n_workers` ignored); else a `LocalCluster` of `n_workers` processes on loopback."""
    if n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    if threads_per_worker < 1:
        raise ValueError(f"threads_per_worker must be at least 1, got {threads_per_worker}")
    common = {"host": "127.0.0.1", "dashboard_address": ":0", "preload": ["paretune.flows.worker_setup"]}
    with dask.config.set(LOCAL_SCHEDULER_CONFIG):
        if visible_gpu_count() > 0 and dask_cuda_available():
            from dask_cuda import LocalCUDACluster

            return LocalCUDACluster(threads_per_worker=1, **common)
        return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                                        **common)


# How long a cancelled sweep's local workers get to stop before they are killed: a trial thread
# cannot be interrupted, and Dask's graceful close would wait for it.
CANCEL_KILL_S = 0.5


@dataclass
class TrialCluster:
    """The client of the cluster trials run on, and the local cluster when the flow owns one."""

    client: distributed.Client
    local: distributed.SpecCluster | None = None

    def stop_trials_now(self, workers: set[str]) -> None:
        """Stop the trials running on `workers` without waiting for them (a cancel).

        A local cluster's workers all close at once (the sweep is over); on an external
        cluster, which is not the flow's to close, only those workers are restarted.
        """
        if self.local is None:
            for address in sorted(workers):
                try:
                    self.client.restart_workers([address], timeout=CANCEL_KILL_S * 10, raise_for_error=False)
                except Exception as error:  # it may be gone already
                    logger.warning("could not restart Dask worker %s: %s", address, error)
            return
        nannies = list(self.local.workers.values())

        async def close_all() -> None:
            await asyncio.gather(*(nanny.close(timeout=CANCEL_KILL_S, reason="paretune-cancel") for nanny in nannies),
                                 return_exceptions=True)

        self.local.sync(close_all)


@contextmanager
def dask_cluster(address: str | None, n_workers: int, threads_per_worker: int = 1) -> Iterator[TrialCluster]:
    """The cluster trials run on; the client is closed (and a local cluster shut down) on exit.

    `address` (``tcp://host:8786``) joins a running scheduler, the way to grow past one
    machine; its workers decide their own resources and outlive the flow.
    """
    with _dask_warnings_only():
        if address:
            with distributed.Client(address) as client:
                yield TrialCluster(client)
            return
        with dask.config.set(LOCAL_CLUSTER_CONFIG), local_cluster(n_workers, threads_per_worker) as cluster, \
                distributed.Client(cluster) as client:
            yield TrialCluster(client, cluster)


@contextmanager
def _dask_warnings_only() -> Iterator[None]:
    """Dask's INFO records (every worker and connection coming and going) would drown the
    sweep's own lines in the terminal and the Prefect logs; its warnings and errors still show,
    except the nanny's "still alive, killing" when the flow stops its own workers (`KilledOnClose`)."""
    logger, nanny = logging.getLogger("distributed"), logging.getLogger("distributed.nanny")
    previous, expected = logger.level, KilledOnClose()
    logger.setLevel(logging.WARNING)
    nanny.addFilter(expected)
    try:
        yield
    finally:
        nanny.removeFilter(expected)
        logger.setLevel(previous)


class KilledOnClose(logging.Filter):
    """A worker whose trial thread is still running cannot stop by itself (a thread cannot be
    interrupted), so the nanny kills it when the flow closes or restarts it (the cluster's close,
    a timed-out trial): planned, not a fault, so its "still alive, killing" is not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Worker process still alive after")

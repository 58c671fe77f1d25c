"""Shared fixtures for tests that start real components (Prefect API, Dask cluster).

The repository root goes on `sys.path` and `PYTHONPATH`, so Dask worker processes and flow
subprocesses can import test objectives as `tests.objectives:...`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A throwaway Prefect server for the session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[object]:
    """A local cluster of two single-threaded worker processes, shared by the session."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        yield cluster

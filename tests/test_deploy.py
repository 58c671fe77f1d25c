"""prefect.yaml against a real Prefect server on loopback: deploy everything, run `tune` through a worker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from paretune.storage import DuckDBStorage
from tests.dashboard_fixtures import stop_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "paretune-process"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([PREFECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own home and database."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PWD": str(ROOT),
        "COLUMNS": "200",
    }
    log = open(home / "server.log", "w")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (home / "server.log").read_text()
            assert time.monotonic() < deadline, "prefect server did not become healthy in 120 s"
            time.sleep(0.5)
        yield env
    finally:
        stop_group(server.pid)
        log.close()


def declared_deployments() -> list[dict]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def test_deploy_registers_every_deployment_and_a_worker_runs_tune(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = prefect_server
    declared = declared_deployments()
    deployable = [d for d in declared if (ROOT / d["entrypoint"].split(":")[0]).exists()]
    prefect(env, "work-pool", "create", "--type", "process", POOL)
    if deployable == declared:
        prefect(env, "--no-prompt", "deploy", "--all", timeout=300)
    else:
        names = [arg for d in deployable for arg in ("--name", d["name"])]
        prefect(env, "--no-prompt", "deploy", *names, timeout=300)

    spec = dict(SIZE_VS_ERROR_SPEC) | {"name": "deployed", "observation_budget": 4}
    spec_path = tmp_path / "deployed.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "deployed.duckdb"
    parameters = {"experiment": {"spec_path": str(spec_path)}, "db_path": str(db), "options": {"parallelism": 2}}
    submitted = prefect(env, "deployment", "run", "tune/tune", "--params", json.dumps(parameters))
    flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", submitted).group(1)
    prefect(env, "worker", "start", "--pool", POOL, "--run-once", timeout=300)

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as client:
            deployments = {(client.read_flow(d.flow_id).name, d.name): d for d in client.read_deployments()}
            flow_run = client.read_flow_run(flow_run_id)
    assert {d["name"] for d in deployable} == {name for _, name in deployments}
    assert {"tune", "report", "nightly-sweep"} <= {d["name"] for d in deployable}
    sweep = deployments[("nightly-sweep", "nightly-sweep")]
    assert [s.schedule.cron for s in sweep.schedules] == ["0 2 * * *"]
    assert flow_run.state.is_completed(), flow_run.state
    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        assert store.progress(experiment.id).observations == 4


def test_cancelling_a_deployment_run_stops_its_sweep_within_seconds(prefect_server, tmp_path):
    """The UI's cancel, as a process worker carries it out: the flow run goes Cancelling, the
    worker signals the flow's process, and the sweep stops, its trials `cancelled`."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = prefect_server
    subprocess.run([PREFECT, "work-pool", "create", "--type", "process", POOL], cwd=ROOT, env=env,
                   capture_output=True, text=True)  # already there when the test above ran first
    prefect(env, "--no-prompt", "deploy", "--name", "tune", timeout=300)
    shortest = 120.0  # seconds a trial sleeps at least: a flow that waited for its trials would take most of that
    spec = {"name": "slow", "parameters": [{"name": "duration", "type": "double",
                                            "bounds": {"min": shortest, "max": 1.5 * shortest}}],
            "metrics": [{"name": "loss", "objective": "minimize"}, {"name": "cost", "objective": "minimize"}],
            "observation_budget": 6, "parallel_bandwidth": 2,
            "metadata": {"objective": "tests.objectives:sleep_for", "trial": {"epochs": 10}}}
    spec_path = tmp_path / "slow.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    db = tmp_path / "slow.duckdb"
    parameters = {"experiment": {"spec_path": str(spec_path)}, "db_path": str(db), "options": {"parallelism": 2}}
    submitted = prefect(env, "deployment", "run", "tune/tune", "--params", json.dumps(parameters))
    flow_run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", submitted).group(1)
    worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", POOL, "--run-once"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _running_trials(db) >= 2:
            assert time.monotonic() < deadline and worker.poll() is None, "the deployment's sweep did not start"
            time.sleep(0.5)
        running_since = typed = time.monotonic()
        prefect(env, "flow-run", "cancel", flow_run_id)  # returns once the run is Cancelling
        asked = time.monotonic()
        with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as client:
                while not client.read_flow_run(flow_run_id).state.is_cancelled():
                    assert time.monotonic() - asked < 60, client.read_flow_run(flow_run_id).state
                    time.sleep(0.2)
        took = time.monotonic() - asked
        worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    print(f"\ndeployment cancel: Cancelling -> Cancelled in {took:.1f} s "
          f"(the `prefect flow-run cancel` command itself took {asked - typed:.1f} s)")
    left = shortest - (asked - running_since)  # the least either running trial still had to sleep
    assert took < left / 2, "the flow waited for its trials instead of stopping them"  # seconds against minutes
    with DuckDBStorage(db, read_only=True) as store:
        (experiment,) = store.list_experiments()
        assert {s.state for s in store.list_suggestions(experiment.id)} == {"cancelled"}
        assert {r.status for r in store.list_runs(experiment.id)} == {"cancelled"}


def _running_trials(db: Path) -> int:
    if not db.exists():
        return 0
    with DuckDBStorage(db, read_only=True) as store:
        return sum(1 for experiment in store.list_experiments()
                   for s in store.list_suggestions(experiment.id, state="open") if s.started_at is not None)


# -- the README's Prefect section, as a newcomer types it ------------------------------------------
README_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
README_DEFAULT_PORT = "4200"


def readme_prefect_section() -> str:
    """The bash block of README.md's "### Deployments" section, verbatim."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Deployments"):]
    return README_BLOCK.search(section).group(1)


def repository_copy(folder: Path) -> Path:
    """What a fresh clone holds for `prefect deploy --all` (prefect.yaml, its entry points, the
    experiments) and the `.venv` that `make` builds (this interpreter's)."""
    folder.mkdir()
    (folder / "prefect.yaml").write_text((ROOT / "prefect.yaml").read_text())
    for name in ("flows", "experiments"):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def test_the_readme_prefect_section_runs_as_written_in_a_fresh_shell(tmp_path):
    """A fresh bash with nothing of paretune on its PATH and no Prefect settings runs the README's
    `. .venv/bin/activate` and then its Prefect section line by line, unchanged but for the port
    (4200 may be taken on a shared machine): server, pool, deployments, worker, a tune run
    watched to its end, the artifact list. The run's artifacts are then read back from the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = str(free_port())
    repo = repository_copy(tmp_path / "paretune")
    script = "set -e\n. .venv/bin/activate\n" + readme_prefect_section().replace(f":{README_DEFAULT_PORT}", f":{port}")
    shell_env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                 "COLUMNS": "200", "PREFECT_HOME": str(tmp_path / "prefect-home"),
                 "PREFECT_SERVER_API_PORT": port,  # the port the README's server binds (its default is 4200)
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # this machine has no internet
    (tmp_path / "home").mkdir()
    shell = subprocess.Popen(["bash", "-c", script], cwd=repo, env=shell_env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = shell.communicate(timeout=900)
        assert shell.returncode == 0, output[-6000:]
        flow_run_id = re.findall(r"UUID:\s*([0-9a-f-]{36})", output)[-1]
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):  # the README's server, still up
            with get_client(sync_client=True) as client:
                flow_run = client.read_flow_run(flow_run_id)
                artifacts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    finally:
        subprocess.run(["bash", "-c", ". .venv/bin/activate && prefect server stop"], cwd=repo, env=shell_env,
                       capture_output=True, timeout=60)
        stop_group(shell.pid)  # the worker the README started in the background
    assert flow_run.state.is_completed(), flow_run.state
    keys = {artifact.key for artifact in artifacts if artifact.key}
    assert {f"demo-size-vs-accuracy-1-{what}" for what in ("frontier", "thresholds", "summary", "frontier-picture")} <= keys
    summary = next(a for a in artifacts if a.key == "demo-size-vs-accuracy-1-summary")
    assert "12 of 12 observations" in summary.data
    assert "demo-size-vs-accuracy-1-summary" in output  # `prefect artifact ls` listed it
    assert (repo / "prefect-worker.log").exists()
    with DuckDBStorage(repo / "paretune.duckdb", read_only=True) as store:
        (experiment,) = store.list_experiments()
        assert store.progress(experiment.id).observations == 12


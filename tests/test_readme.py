"""Every example in README.md runs, so the README cannot drift from the code.

The fenced blocks are read out of README.md itself:
- `yaml` definitions validate; the block showing an invalid definition's message is that message;
- `python` blocks run in order, in one namespace, in a fresh folder holding `experiments/`;
- `bash` blocks run line by line, in order, in one fresh folder (later sections read the store
  the tuning section made), against a real Prefect server and moto's S3, each line through bash
  as a user types it after the README's `. .venv/bin/activate` (no PATH set up for it here);
- `sql` statements run through `paretune.connect`;
- the few commands that need hours, GPUs or a long-lived server are named in COVERED with the
  test that runs them; this file checks that test exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import paretune
from paretune.optimizer import ExperimentSpec, SpecError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# Commands run elsewhere: a prefix of the command line -> the test that runs it.
PREFECT_SECTION = "tests/test_deploy.py::test_the_readme_prefect_section_runs_as_written_in_a_fresh_shell"
COVERED = {
    "make demo-quick": "tests/test_readme.py::test_make_demo_quick_runs_the_demo_flow",
    "make demo": "tests/test_bert_demo.py",
    "make test": ".ci/run",
    "export PREFECT_API_URL": PREFECT_SECTION,
    "prefect server start": PREFECT_SECTION,
    "until curl": PREFECT_SECTION,
    "prefect work-pool create": PREFECT_SECTION,
    "prefect deploy --all": PREFECT_SECTION,
    "prefect worker start": PREFECT_SECTION,
    "prefect deployment run": PREFECT_SECTION,
    "prefect artifact ls": PREFECT_SECTION,
    "paretune dashboard": "tests/test_dashboard.py",
    "paretune --db team.duckdb serve": "tests/test_server_sigopt.py::test_core_api_script",
    "SIGOPT_API_URL=": "tests/test_server_sigopt.py::test_runs_api_script",
    "paretune preprocess": "tests/test_bert_preprocess_flow.py",
    "paretune tune experiments/bert_squad2.yaml": "tests/test_bert_experiments.py",
    "python -m paretune.bert.evaluate": "tests/test_bert_metrics.py",
}


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def commands(block: str) -> list[str]:
    """The command lines of a bash block, comments stripped."""
    lines = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            lines.append(shlex.join(words))
    return lines


def covered_by(command: str) -> str | None:
    return next((test for prefix, test in COVERED.items() if command.startswith(prefix)), None)


def workspace(tmp_path: Path, name: str) -> Path:
    """A fresh folder holding `experiments/` and a `.venv` (this interpreter's environment)."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copytree(ROOT / "experiments", folder / "experiments")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def run_line(command: str, folder: Path, env: dict[str, str]) -> None:
    """The line as typed into a shell where the README's `. .venv/bin/activate` ran."""
    result = subprocess.run(["bash", "-c", f". .venv/bin/activate && {command}"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.fixture
def shell_env(prefect_api, s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="bucket")  # the README's bucket
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    return os.environ | {"PREFECT_API_URL": prefect_api, "PARETUNE_S3_ENDPOINT_URL": s3_endpoint, "PATH": path,
                         "PYTHONPATH": str(ROOT), "COLUMNS": "200", "PARETUNE_DB": "paretune.duckdb"}


def test_every_command_is_run_here_or_by_a_named_test():
    for block in blocks("bash"):
        for command in commands(block):
            test = covered_by(command)
            if test is None:
                continue
            path, _, name = test.partition("::")
            assert (ROOT / path).exists(), f"{command}: {path} does not exist"
            assert not name or f"def {name}(" in (ROOT / path).read_text(), f"{command}: {test} does not exist"


def test_the_yaml_definitions_validate_and_the_error_message_is_the_real_one():
    for block in blocks("yaml"):
        ExperimentSpec.model_validate(yaml.safe_load(block))
    (shown,) = [body for lang, body in BLOCK.findall(README) if lang == "" and "invalid experiment definition" in body]
    definition = yaml.safe_load(blocks("yaml")[0])
    definition["parameters"][0]["bound"] = definition["parameters"][0].pop("bounds")
    definition["parameters"][1] = {"name": "n_layers", "type": "int", "bounds": {"min": 5, "max": 1}}
    definition["metrics"][2]["strategy"] = "optimize"
    with pytest.raises(SpecError) as refused:
        ExperimentSpec.model_validate(definition)
    assert str(refused.value).strip() == shown.strip()


def test_the_python_examples_run(tmp_path, monkeypatch):
    folder = workspace(tmp_path, "python")
    monkeypatch.chdir(folder)
    namespace: dict = {}
    for block in blocks("python"):
        exec(compile(block, "README.md", "exec"), namespace)
    experiment = paretune.open_experiment("demo-size-vs-accuracy", db="paretune.duckdb")
    assert experiment.progress().observations == 40 and experiment.frontier()
    assert len(experiment.storage.list_runs(experiment.id)) == 10  # the run loop's ten trials


def test_the_shell_examples_run(tmp_path, shell_env):
    folder = workspace(tmp_path, "shell")
    ran = []
    for block in blocks("bash"):
        for command in commands(block):
            if covered_by(command) is None:
                run_line(command, folder, shell_env)
                ran.append(command)
    assert any(c.startswith("paretune tune") for c in ran) and any(c.startswith("paretune create") for c in ran)
    assert (folder / "report.html").exists() and (folder / "exported" / "experiment-1" / "frontier.parquet").exists()
    with paretune.connect(folder / "paretune.duckdb") as connection:
        assert connection.execute("SELECT count(*) FROM observations").fetchall() == [(16,)]
        # a --budget is stored: the resumed experiment's budget is 16, and it is complete
        assert connection.execute("SELECT budget, state FROM experiments WHERE id = 1").fetchall() == [(16, "completed")]


def test_the_sql_examples_run(tmp_path):
    db = tmp_path / "paretune.duckdb"
    experiment = paretune.create_experiment(ROOT / "experiments" / "demo.yaml", db=str(db))
    for _ in range(6):
        suggestion = experiment.suggest()
        experiment.observe(suggestion, values={"accuracy": 0.5, "size": 100.0})
    connection = paretune.connect(db)
    results = [connection.execute(statement).fetchall()
               for statement in (s for block in blocks("sql") for s in block.split(";") if s.strip())]
    assert results[0]  # the frontier


def test_the_demos_end_with_the_frontier_and_three_commands_that_run_as_printed(tmp_path, monkeypatch):
    """`make demo` does not activate .venv, so the closing hints name its commands' path; each
    runs as printed from the demo's folder in a bare shell (the two servers on free ports)."""
    import io

    import httpx
    from rich.console import Console

    from paretune.flows.demo import frontier_console_table, print_where
    from paretune.flows.tune import TuneResult
    from tests.dashboard_fixtures import free_port, stop_group, wait_for_http

    folder = workspace(tmp_path, "demo")
    monkeypatch.chdir(folder)
    (folder / ".paretune" / "prefect").mkdir(parents=True)  # the demo's Prefect home, which its runs fill
    experiment = paretune.create_experiment("experiments/demo.yaml", db="paretune.duckdb")
    experiment.set_observation_budget(4)
    for accuracy, size in ((0.9, 3000.0), (0.5, 800.0), (0.4, 2000.0), (0.7, 1500.0)):
        experiment.observe(experiment.suggest(), values={"accuracy": accuracy, "size": size})
    experiment.storage.close()
    result = TuneResult(experiment_id=experiment.id, experiment=experiment.name, budget=4, observations=4,
                        completed=4, failed=0, expired_on_start=0)
    output = io.StringIO()
    console = Console(file=output, width=200)
    console.print(frontier_console_table("paretune.duckdb", result.experiment_id))
    print_where(console, result, "paretune.duckdb", Path(".paretune/prefect"))
    printed = output.getvalue()
    assert printed.index("Pareto frontier of") < printed.index("Next")
    lines = printed[printed.index("Next"):].splitlines()[1:]
    commands = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    assert len(commands) == 3 and "paretune dashboard" in commands[0] and "prefect server start" in commands[1]

    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    query = subprocess.run(["bash", "-c", commands[2]], cwd=folder, env=bare, capture_output=True, text=True, timeout=120)
    assert query.returncode == 0 and "trial" in query.stdout and "accuracy" in query.stdout, query.stderr
    assert len([line for line in query.stdout.splitlines() if re.match(r"│\s+\d+\s+│", line)]) == 3  # the frontier

    for command, port_env, url in ((commands[0], None, "http://127.0.0.1:{port}/experiments/1"),
                                   (commands[1], "PREFECT_SERVER_API_PORT", "http://127.0.0.1:{port}/api/health")):
        port = free_port()
        typed = command if port_env else f"{command} --port {port}"  # 8080 may be taken on a shared machine
        server = subprocess.Popen(["bash", "-c", typed], cwd=folder, env=bare | ({port_env: str(port)} if port_env else {}),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_http(url.format(port=port), server, timeout_s=180)
            assert httpx.get(url.format(port=port), timeout=10).status_code == 200, typed
        finally:
            stop_group(server.pid)


def test_make_demo_quick_runs_the_demo_flow(tmp_path, prefect_api):
    """`make demo-quick` is `python -m paretune.flows.demo`: a whole tune of the built-in function
    on a local Dask cluster, ending with the frontier and the next commands."""
    make = subprocess.run(["make", "-n", "--no-print-directory", "demo-quick"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert make.stdout.strip().splitlines()[-1].endswith("python -m paretune.flows.demo")
    folder = workspace(tmp_path, "quick")
    env = os.environ | {"PREFECT_API_URL": prefect_api, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    demo = subprocess.run([sys.executable, "-m", "paretune.flows.demo", "--db", "paretune.duckdb"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Pareto frontier of demo-size-vs-accuracy" in demo.stdout and "paretune dashboard" in demo.stdout
    printed = demo.stdout + demo.stderr  # Dask's start-up and planned-shutdown chatter stays out of it
    assert "distributed.preloading" not in printed and "still alive after" not in printed
    with paretune.connect(folder / "paretune.duckdb") as connection:
        (budget, observed), = connection.execute(
            "SELECT budget, (SELECT count(*) FROM observations) FROM experiments").fetchall()
    assert observed == budget

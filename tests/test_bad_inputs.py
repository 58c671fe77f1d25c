"""Bad input, by the hundred: every one refused with a clear message and a non-zero exit, never a
traceback, and never a file created or changed.

The command lines run in this process (`paretune`, `python -m paretune.flows.tune`, `python -m
flows.report` are plain `main(argv)` functions), so hundreds of cases take seconds; a few run
as real subprocesses to check what a shell sees.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import duckdb
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paretune
from paretune.flows.report import main as report_main
from paretune.flows.tune import main as tune_main
from paretune.optimizer import SpecError
from paretune.cli import main as cli_main
from paretune.testfunctions import SIZE_VS_ERROR_SPEC
from paretune.storage import StorageError

ROOT = Path(__file__).resolve().parents[1]
VALID = copy.deepcopy(SIZE_VS_ERROR_SPEC)


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder as a user has it: a store with one experiment (suggestion 1 open, 2 observed),
    a valid definition, and things that are not paretune's."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    (folder / "spec.yaml").write_text(yaml.safe_dump(VALID))
    experiment = paretune.create_experiment(VALID, db=str(folder / "store.duckdb"))
    first, second = experiment.suggest_batch(2)
    experiment.observe(second, values={"accuracy": 0.5, "size": 100.0})
    experiment.storage.close()
    (folder / "folder").mkdir()
    (folder / "notes.txt").write_text("not a database\n")
    (folder / "empty.yaml").write_text("")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    (folder / "binary.yaml").write_bytes(b"\x00\xff\xfe garbage")
    sqlite3.connect(folder / "sqlite.db").execute("CREATE TABLE t (x)").connection.commit()
    duckdb.connect(str(folder / "foreign.duckdb")).execute("CREATE TABLE mine AS SELECT 1 AS x").close()
    (folder / "changed.yaml").write_text(yaml.safe_dump(VALID | {"metrics": VALID["metrics"][:2]}))
    (folder / "elsewhere.yaml").write_text(yaml.safe_dump(VALID | {"metadata": {"objective": "no.such.module:f"}}))
    (folder / "forbidden.yaml").write_text(yaml.safe_dump(VALID | {"name": "forbidden",
                                                                   "metadata": {"objective": "os:system"}}))
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(place: Path, command: Callable[[list[str]], Any], argv: list[str]) -> str:
    """Run `command(argv)` in `place`; return its stderr. Fails on exit 0, a traceback, or a file touched."""
    before = snapshot(place)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(place), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = command(argv)
        except SystemExit as exit_:
            code = exit_.code
    assert code not in (0, None), f"{argv} was accepted: {out.getvalue()}"
    assert "Traceback" not in err.getvalue() + out.getvalue(), err.getvalue()
    assert err.getvalue().strip(), f"{argv}: refused without a word"
    assert snapshot(place) == before, f"{argv} changed files"
    return err.getvalue()


CLI_CASES = [
    (["create", "missing.yaml"], "missing.yaml: No such file or directory"),
    (["create", "folder"], "Is a directory"),
    (["create", "empty.yaml"], "must be a mapping"),
    (["create", "list.yaml"], "must be a mapping"),
    (["create", "broken.yaml"], "not valid YAML/JSON"),
    (["create", "binary.yaml"], "binary.yaml: not a text file"),
    (["create", "spec.yaml"], "already exists"),
    (["--db", "folder", "create", "spec.yaml"], "is a directory"),
    (["--db", "nowhere/x.duckdb", "create", "spec.yaml"], "folder .*nowhere does not exist"),
    (["--db", "notes.txt", "create", "spec.yaml"], "not a DuckDB database"),
    (["--db", "sqlite.db", "list"], "is an SQLite database"),
    (["--db", "foreign.duckdb", "list"], "another application"),
    (["--db", "missing.duckdb", "list"], "no database at"),
    (["--db", "store.duckdb.read", "list"], r"duckdb.read is the copy of .*store.duckdb .*pass --db .*store.duckdb$"),
    (["--db", "store.duckdb.read", "observe", "1", "--value", "accuracy=1", "--value", "size=1"],
     "a write to it would be lost"),
    (["list", "--db", "folder"], "is a directory"),
    (["frontier", "7"], "no experiment '7'"),
    (["frontier", "nope"], "no experiment 'nope'"),
    (["frontier", "1", "--format", "xml"], "invalid choice"),
    (["export", "1", "--to", "notes.txt"], "is a file; give a folder"),
    (["export", "1"], "the following arguments are required: --to"),
    (["export", "9", "--to", "out"], "no experiment '9'"),
    (["export", "1", "--to", "ftp://host/x"], "use a local folder"),
    (["suggest", "nope"], "no experiment 'nope'"),
    (["suggest", "1", "--count", "0"], "between 1 and 1000"),
    (["suggest", "1", "--count", "5000"], "between 1 and 1000"),
    (["suggest", "1", "--count", "29"], r"28 suggestion\(s\) left"),
    (["suggest", "1", "--count", "two"], "not a whole number"),
    (["suggest", "1", "--seed", "x"], "invalid int value"),
    (["observe", "1.7", "--value", "accuracy=1"], "not a suggestion id"),
    (["observe", "-3", "--value", "accuracy=1"], "not a suggestion id"),
    (["observe", "99", "--value", "accuracy=1", "--value", "size=1"], "no suggestion 99"),
    (["observe", "2", "--value", "accuracy=1", "--value", "size=1"], "completed, not open"),
    (["observe", "1"], "give the metric values"),
    (["observe", "1", "--value", "accuracy"], "write it as METRIC=NUMBER"),
    (["observe", "1", "--value", "=1"], "write it as METRIC=NUMBER"),
    (["observe", "1", "--value", "accuracy=high", "--value", "size=1"], "'high' is not a number"),
    (["observe", "1", "--value", "accuracy=nan", "--value", "size=1"], "values must be finite"),
    (["observe", "1", "--value", "accuracy=inf", "--value", "size=1"], "values must be finite"),
    (["observe", "1", "--value", "accuracy=1", "--value", "accuracy=2"], "given twice"),
    (["observe", "1", "--value", "accuracy=1"], "metric size: missing"),
    (["observe", "1", "--value", "accuracy=1", "--value", "size=1", "--value", "bleu=2"], "no such metric"),
    (["observe", "1", "--failed", "--value", "size=1"], "not both"),
    (["observe", "1", "--reason", "oom", "--value", "accuracy=1", "--value", "size=1"], "--reason goes with --failed"),
    (["observe", "1", "--value", "accuracy=1", "--value", "size=1", "--duration", "-1"], "--duration must be"),
    (["observe", "1", "--value", "accuracy=1", "--value", "size=1", "--duration", "nan"], "--duration must be"),
    (["--db", "missing.duckdb", "observe", "1", "--value", "accuracy=1"], "no database at"),
    (["bogus"], "invalid choice"),
    ([], "the following arguments are required"),
    (["dashboard", "--port", "70000"], "between 1 and 65535"),
    (["--db", "missing.duckdb", "dashboard"], "no database at"),
    (["report", "nope", "--html", "out.html"], "no experiment 'nope'"),
    (["--db", "missing.duckdb", "report", "1", "--html", "out.html"], "no database at"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_CASES, ids=[" ".join(c[0]) or "nothing" for c in CLI_CASES])
def test_the_cli_refuses(place, argv, message):
    err = refused(place, cli_main, ["--db", "store.duckdb", *argv] if "--db" not in argv else argv)
    assert re.search(message, err), err


TUNE_CASES = [
    (["missing.yaml"], "missing.yaml: No such file or directory"),
    (["folder"], "Is a directory"),
    (["broken.yaml"], "not valid YAML/JSON"),
    (["empty.yaml"], "must be a mapping"),
    (["spec.yaml", "--budget", "0"], "must be at least 1"),
    (["spec.yaml", "--budget", "-4"], "must be at least 1"),
    (["spec.yaml", "--budget", "1000000000000"], "less than or equal to 100000"),
    (["spec.yaml", "--budget", "ten"], "not a whole number"),
    (["spec.yaml", "--parallelism", "0"], "must be at least 1"),
    (["spec.yaml", "--timeout", "-5"], "must be a finite number above 0"),
    (["spec.yaml", "--timeout", "nan"], "must be a finite number above 0"),
    (["spec.yaml", "--workers", "0"], "must be at least 1"),
    (["spec.yaml", "--experiment", "1"], "not allowed with argument"),
    ([], "one of the arguments"),
    (["--experiment", "nope"], "no experiment 'nope'"),
    (["--experiment", "1", "--db", "missing.duckdb"], "no database at .*missing.duckdb: nothing to resume"),
    (["spec.yaml", "--db", "folder"], "is a directory"),
    (["spec.yaml", "--db", "notes.txt"], "not a DuckDB database"),
    (["spec.yaml", "--db", "sqlite.db"], "is an SQLite database"),
    (["spec.yaml", "--db", "foreign.duckdb"], "another application"),
    (["changed.yaml"], "different definition; rename the experiment"),
    (["elsewhere.yaml", "--db", "fresh.duckdb"], "cannot import 'no.such.module'"),
]


@pytest.mark.parametrize(("argv", "message"), TUNE_CASES, ids=[" ".join(c[0]) or "nothing" for c in TUNE_CASES])
def test_the_tune_flow_refuses_before_prefect_starts(place, argv, message):
    err = refused(place, tune_main, argv if "--db" in argv else [*argv, "--db", "store.duckdb"])
    assert re.search(message, err), err


def test_objectives_outside_the_allow_list_are_refused(place, monkeypatch):
    monkeypatch.setenv("PARETUNE_OBJECTIVE_MODULES", "paretune.testfunctions, bert")
    err = refused(place, tune_main, ["forbidden.yaml", "--db", "fresh.duckdb"])
    assert "module 'os' is not allowed here; $PARETUNE_OBJECTIVE_MODULES allows paretune.testfunctions, paretune.bert" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["nope", "--db", "store.duckdb"], "no experiment 'nope'"),
    (["1", "--db", "missing.duckdb"], "no database at"),
    (["1", "--db", "foreign.duckdb"], "another application"),
    ([], "the following arguments are required"),
])
def test_the_report_flow_refuses_before_prefect_starts(place, argv, message):
    assert message in refused(place, report_main, argv)


# -- generated definitions ------------------------------------------------------------------------
BAD_VALUES: dict[str, list[Any]] = {
    "name": ["", " padded ", "two\nlines", "\x1b[31mred", "42", 42, None, "x" * 300],
    "parameters.0.bounds.min": ["16", True, None, float("nan"), [1], 2000],
    "parameters.0.bounds": [{"min": 5}, {"min": 10, "max": 1}, [16, 1024], "16..1024"],
    "parameters.0.type": ["float", 3, None],
    "parameters.1.bounds.max": [8.5, "8"],
    "parameters.3.categorical_values": [["adamw"], [], ["a", "a"], "adamw", [{"nom": "x"}]],
    "parameters.0.transformation": ["ln", True],
    "parameters.1.default_value": [100, "deep", 2.5],
    "parameters": [[], {}, "width", None],
    "metrics.0.objective": ["max", 1],
    "metrics.0.strategy": ["optimise", None],
    "metrics.0.threshold": ["0.3", float("inf")],
    "metrics.2.threshold": [1.0],
    "metrics": [[], [{"name": "a"}, {"name": "b"}, {"name": "c"}], "accuracy"],
    "observation_budget": [0, -1, "30", 30.5, 10**12, True],
    "parallel_bandwidth": [0, "2", 10**6],
    "conditions_typo": [{"x": 1}],
}


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(sorted(BAD_VALUES)), min_size=1, max_size=3, unique=True).flatmap(
    lambda paths: st.tuples(*(st.tuples(st.just(p), st.sampled_from(BAD_VALUES[p])) for p in paths))))
def test_generated_bad_definitions_are_refused_with_their_path_and_write_nothing(place, edits):
    spec = copy.deepcopy(VALID)
    for path, value in sorted(edits, key=lambda edit: -edit[0].count(".")):  # deepest first: parents replace later
        _set(spec, path, value)
    path = place / "generated.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    try:
        with pytest.raises(SpecError) as caught:  # the API
            paretune.create_experiment(spec, db=str(place / "generated.duckdb"))
        fields = {p.split(".")[0].split("[")[0].split(":")[0] for p in caught.value.problems}
        assert fields & {e[0].split(".")[0] for e in edits}, (edits, caught.value.problems)
        refused(place, cli_main, ["--db", "generated.duckdb", "create", "generated.yaml"])
    finally:
        path.unlink()
    assert not (place / "generated.duckdb").exists()


@pytest.mark.parametrize("suggestion", [1.7, "1", None, True, -1, 10**9])
def test_ask_tell_refuses_what_is_not_a_suggestion(place, suggestion):
    before = snapshot(place)
    experiment = paretune.open_experiment(1, db=str(place / "store.duckdb"))
    with pytest.raises(StorageError):
        experiment.observe(suggestion, values={"accuracy": 0.5, "size": 1.0})
    experiment.storage.close()
    assert snapshot(place) == before


def test_a_shell_sees_one_line_and_the_exit_code(place):
    for command, code in ((["-m", "paretune.cli", "--db", "store.duckdb", "observe", "1", "--value", "accuracy=1"], 1),
                          (["-m", "paretune.flows.tune", "spec.yaml", "--db", "store.duckdb", "--budget", "0"], 2),
                          (["-m", "paretune.flows.tune", "missing.yaml"], 1),
                          (["-m", "paretune.cli", "tune", "spec.yaml", "--db", "store.duckdb", "--budget", "0"], 2),
                          (["-m", "paretune.cli", "--db", "store.duckdb", "tune", "missing.yaml"], 1)):
        result = subprocess.run([sys.executable, *command], cwd=place, capture_output=True, text=True,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert result.returncode == code, result.stderr
        lines = result.stderr.strip().splitlines()
        assert "Traceback" not in result.stderr and ": error: " in lines[-1], result.stderr
        assert len(lines) == 1 or lines[0].startswith("usage:"), result.stderr  # argparse shows usage with its error
        assert result.stdout == ""

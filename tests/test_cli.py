import json
import subprocess
import sys

import pytest
import yaml

from paretune.cli import main
from paretune.testfunctions import SIZE_VS_ERROR_SPEC


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SIZE_VS_ERROR_SPEC))
    return path


def cli(capsys, db, *args):
    code = main(["--db", str(db), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_create_suggest_observe_frontier_list(tmp_path, capsys, spec_file):
    db = tmp_path / "cli.duckdb"
    code, out, _ = cli(capsys, db, "create", str(spec_file))
    assert code == 0 and "created experiment 1" in out
    code, out, _ = cli(capsys, db, "suggest", "1", "--count", "2")
    suggestions = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [s["suggestion"] for s in suggestions] == [1, 2]
    code, out, _ = cli(capsys, db, "observe", "1", "--value", "accuracy=0.8", "--value", "size=120")
    assert code == 0 and "(1 of 30 observations)" in out
    code, out, _ = cli(capsys, db, "observe", "2", "--failed", "--reason", "out_of_memory")
    assert code == 0
    code, out, _ = cli(capsys, db, "frontier", SIZE_VS_ERROR_SPEC["name"])
    assert code == 0 and "1 frontier point(s), 2 observation(s), 1 failed" in out
    assert "accuracy" in out and "0.8" in out and "120" in out
    code, out, _ = cli(capsys, db, "frontier", "1", "--format", "json")
    assert json.loads(out)[0]["values"] == {"accuracy": 0.8, "size": 120}
    code, out, _ = cli(capsys, db, "list")
    assert code == 0 and "2/30" in out
    assert main(["list", "--db", str(db)]) == 0 and "2/30" in capsys.readouterr().out  # --db after the command


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["observe", "1", "--value", "accuracy=0.8"], 1, "metric size: missing"),
        (["observe", "1", "--value", "accuracy=0.8", "--value", "accuracy=0.9"], 2, "given twice"),
        (["observe", "1.7", "--value", "accuracy=0.8"], 2, "'1.7' is not a suggestion id"),
        (["suggest", "1", "--count", "5000"], 2, "--count must be between 1 and 1000"),
        (["suggest", "1", "--count", "40"], 1, "29 suggestion(s) left in its budget of 30"),
        (["create", "missing.yaml"], 1, "missing.yaml: No such file or directory"),
        (["observe", "1", "--value", "accuracy=0.8", "--value", "size=1", "--value", "bleu=1"], 1, "no such metric"),
        (["observe", "99", "--value", "accuracy=0.8"], 1, "no suggestion 99"),
        (["observe", "1", "--value", "accuracy"], 2, "write it as METRIC=NUMBER"),
        (["observe", "1", "--value", "accuracy=high"], 2, "'high' is not a number"),
        (["observe", "1", "--value", "accuracy=nan"], 2, "values must be finite"),
        (["observe", "1"], 2, "give the metric values"),
        (["observe", "1", "--failed", "--value", "size=1"], 2, "not both"),
        (["suggest", "1", "--count", "0"], 2, "--count must be between 1 and 1000, got 0"),
        (["suggest", "nope"], 1, "no experiment 'nope'"),
        (["frontier", "7"], 1, "no experiment '7'"),
        (["bogus"], 2, "invalid choice"),
    ],
)
def test_errors_go_to_stderr_with_exit_codes(tmp_path, capsys, spec_file, args, code, message):
    db = tmp_path / "cli.duckdb"
    cli(capsys, db, "create", str(spec_file))
    cli(capsys, db, "suggest", "1")
    if code == 2:
        with pytest.raises(SystemExit) as exited:
            main(["--db", str(db), *args])
        assert exited.value.code == 2
        _, err = capsys.readouterr()
    else:
        got, out, err = cli(capsys, db, *args)
        assert got == code and out == ""
    assert message in err


def test_invalid_spec_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "parameters": [{"name": "p", "type": "int", "bound": {"min": 1, "max": 2}}],
                                   "metrics": [{"name": "m", "strategy": "store", "threshold": 1}]}))
    code, out, err = cli(capsys, tmp_path / "cli.duckdb", "create", str(bad))
    assert code == 1
    assert "parameters[0].bound: unknown key; did you mean `bounds`?" in err
    assert "metrics[0].threshold" in err and "strategy: optimize" in err


def test_export_writes_tables(tmp_path, capsys, spec_file):
    db = tmp_path / "cli.duckdb"
    cli(capsys, db, "create", str(spec_file))
    cli(capsys, db, "suggest", "1")
    cli(capsys, db, "observe", "1", "--value", "accuracy=0.8", "--value", "size=120")
    code, out, _ = cli(capsys, db, "export", "1", "--to", str(tmp_path / "out"), "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 3
    frontier_csv = (tmp_path / "out" / "experiment-1" / "frontier.csv").read_text()
    assert "accuracy" in frontier_csv and "0.8" in frontier_csv


def test_console_script_help_for_every_subcommand(tmp_path):
    for command in [[], ["create"], ["suggest"], ["observe"], ["frontier"], ["export"], ["list"], ["dashboard"],
                    ["report"], ["tune"], ["preprocess"]]:
        result = subprocess.run([sys.executable, "-m", "paretune.cli", *command, "--help"],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0 and f"usage: paretune {' '.join(command)}".strip() in result.stdout
    listing = subprocess.run([sys.executable, "-m", "paretune.cli", "--help"], capture_output=True, text=True).stdout
    assert "tune" in listing and "preprocess" in listing and "report" in listing


@pytest.mark.parametrize("before_command", [True, False])
def test_tune_takes_the_flow_options_and_db_on_either_side(tmp_path, capsys, before_command):
    """`paretune tune` is the flow's own parser: a bad budget is refused there, before anything starts."""
    db = tmp_path / "store.duckdb"
    argv = (["--db", str(db), "tune", "spec.yaml", "--budget", "0"] if before_command
            else ["tune", "spec.yaml", "--budget", "0", "--db", str(db)])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "paretune tune: error: argument --budget: 0 must be at least 1" in capsys.readouterr().err
    assert not db.exists()


def test_tune_refuses_a_missing_definition_before_prefect_starts(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--db", str(tmp_path / "store.duckdb"), "tune", str(tmp_path / "missing.yaml")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "Traceback" not in err
    assert not (tmp_path / "store.duckdb").exists()


def test_preprocess_takes_no_db(capsys):
    assert main(["--db", "x.duckdb", "preprocess"]) == 2
    assert "--db does not apply to preprocess" in capsys.readouterr().err

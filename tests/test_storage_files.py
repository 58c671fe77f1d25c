"""One DuckDB file, many processes: writers take turns, readers never wait, refusals write nothing.

Every test works on a real file and real other processes (`python -c ...`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

import paretune
from paretune.optimizer import ExperimentSpec
from paretune.storage import DatabaseLocked, DuckDBStorage, StorageError
from paretune.storage.schema import _V1_TABLES, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
SPEC = ExperimentSpec.model_validate({
    "name": "files", "parameters": [{"name": "x", "type": "double", "bounds": {"min": 0, "max": 1}}],
    "metrics": [{"name": "a"}, {"name": "b"}], "observation_budget": 100,
})


def python(code: str, *args: str, wait: bool = True) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", textwrap.dedent(code), *args]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes: what a refused command must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def seeded(path: Path, observations: int = 3) -> int:
    with DuckDBStorage(path) as store, store.batch():
        experiment = store.create_experiment(SPEC)
        for i in range(observations):
            (suggestion,) = store.create_suggestions(experiment.id, [{"x": i / 10}])
            store.record_observation(suggestion.id, values={"a": float(i), "b": 1.0})
        return experiment.id


def test_readers_see_every_commit_and_never_block_the_writer(tmp_path):
    db = tmp_path / "shared.duckdb"
    experiment_id = seeded(db)
    reader = DuckDBStorage(db, read_only=True)
    held = paretune.connect(db)  # a user's session, kept open throughout
    assert reader.progress(experiment_id).observations == 3
    writer = python("""
        import sys
        from paretune.storage import DuckDBStorage
        with DuckDBStorage(sys.argv[1], lock_timeout_s=5) as store:
            for i in range(5):
                (s,) = store.create_suggestions(1, [{"x": 0.5}])
                store.record_observation(s.id, values={"a": 9.0, "b": 9.0})
    """, str(db))
    assert writer.returncode == 0, writer.stderr
    assert reader.progress(experiment_id).observations == 8  # the same reader, fresh data
    assert held.execute("SELECT count(*) FROM observations").fetchone() == (3,)  # a consistent old snapshot
    assert paretune.connect(db).execute("SELECT count(*) FROM pareto_frontier").fetchone()[0] >= 1
    with pytest.raises(duckdb.Error, match="read-only|Cannot execute"):
        held.execute("DELETE FROM observations")
    reader.close()


def test_a_reader_does_not_wait_for_a_long_write_session(tmp_path):
    """A sweep's write session can hold the file for a while; a dashboard reads the copy it has."""
    db = tmp_path / "long-session.duckdb"
    experiment_id = seeded(db)
    writer = python("""
        import sys, time
        from paretune.storage import DuckDBStorage
        with DuckDBStorage(sys.argv[1]) as store, store.batch():
            (s,) = store.create_suggestions(1, [{"x": 0.5}])
            store.record_observation(s.id, values={"a": 9.0, "b": 9.0})
            print("holding", flush=True)
            time.sleep(60)
    """, str(db), wait=False)
    try:
        assert writer.stdout.readline().strip() == "holding"
        with DuckDBStorage(db, read_only=True, lock_timeout_s=120) as reader:
            assert reader.progress(experiment_id).observations == 3  # the last published state
        assert writer.poll() is None  # answered while the writer still held the file
    finally:
        writer.kill()
        writer.wait()
    with DuckDBStorage(db, read_only=True) as reader:  # the session's committed write, published now
        assert reader.progress(experiment_id).observations == 4


def test_writers_in_several_processes_take_turns(tmp_path):
    db = tmp_path / "turns.duckdb"
    experiment_id = seeded(db, observations=0)
    code = """
        import sys
        from paretune.storage import DuckDBStorage
        with DuckDBStorage(sys.argv[1]) as store:
            for i in range(15):
                (s,) = store.create_suggestions(1, [{"x": 0.25}])
                store.record_observation(s.id, values={"a": 1.0, "b": 2.0})
    """
    writers = [python(code, str(db), wait=False) for _ in range(3)]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    with DuckDBStorage(db, read_only=True) as store:
        assert store.progress(experiment_id).observations == 45
        assert len(store.list_suggestions(experiment_id)) == 45


def test_a_program_holding_the_file_makes_writers_wait_then_refuses_them_by_name(tmp_path):
    db = tmp_path / "held.duckdb"
    experiment_id = seeded(db)
    holder = python("""
        import sys, time, duckdb
        connection = duckdb.connect(sys.argv[1])
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    """, str(db), "30", wait=False)
    assert holder.stdout.readline().strip() == "holding"
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseLocked, match=f"held by another process outside paretune.*PID {holder.pid}"):
            DuckDBStorage(db, lock_timeout_s=1.0).create_suggestions(experiment_id, [{"x": 0.5}])
        assert time.monotonic() - started >= 1.0
        with DuckDBStorage(db, read_only=True) as reader:  # readers read the published copy meanwhile
            assert reader.progress(experiment_id).observations == 3
    finally:
        holder.kill()
        holder.wait()
    # released: the same write goes through, and a writer that waits long enough rides it out
    waiting = python("""
        import sys
        from paretune.storage import DuckDBStorage
        with DuckDBStorage(sys.argv[1], lock_timeout_s=60) as store:
            store.create_suggestions(1, [{"x": 0.5}])
        print("written")
    """, str(db), wait=False)
    assert waiting.wait(timeout=120) == 0 and "written" in waiting.stdout.read()


def test_a_writer_that_died_mid_session_loses_nothing_it_committed(tmp_path):
    db = tmp_path / "crashed.duckdb"
    experiment_id = seeded(db)
    crashed = python("""
        import os, sys
        from paretune.storage import DuckDBStorage
        store = DuckDBStorage(sys.argv[1])
        with store.batch():
            (s,) = store.create_suggestions(1, [{"x": 0.5}])
            store.record_observation(s.id, values={"a": 5.0, "b": 5.0})
            os._exit(9)  # killed before it detached or published: the commit is in the write-ahead log
    """, str(db))
    assert crashed.returncode == 9
    assert Path(f"{db}.wal").exists()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with DuckDBStorage(db, read_only=True) as reader:
        assert reader.progress(experiment_id).observations == 4
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # the reader recovered a copy, not the file
    with DuckDBStorage(db) as writer:
        assert writer.progress(experiment_id).observations == 4
    assert not Path(f"{db}.wal").exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), "is a directory, not a database file"),
    (lambda p: p.write_text("name: not a database\n"), "is not a DuckDB database"),
    (lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.commit(), "is an SQLite database"),
    (lambda p: duckdb.connect(str(p)).execute("CREATE TABLE mine AS SELECT 42 AS answer").close(),
     r"another application \(tables mine; no paretune_schema\)"),
])
def test_a_path_that_is_not_paretune_is_refused_untouched(tmp_path, make, message):
    path = tmp_path / "given.duckdb"
    make(path)
    before = snapshot(tmp_path)
    for read_only in (True, False):
        with pytest.raises(StorageError, match=message):
            DuckDBStorage(path, read_only=read_only)
    assert snapshot(tmp_path) == before


def test_read_only_opens_never_create_anything(tmp_path):
    with pytest.raises(StorageError, match="no database at .*missing.duckdb"):
        DuckDBStorage(tmp_path / "missing.duckdb", read_only=True)
    with pytest.raises(StorageError, match="the folder .*nowhere does not exist"):
        DuckDBStorage(tmp_path / "nowhere" / "x.duckdb")
    writer = DuckDBStorage(tmp_path / "lazy.duckdb")
    assert writer.list_experiments() == []
    with pytest.raises(StorageError, match="no experiment 1"):
        writer.get_experiment(1)
    assert list(tmp_path.iterdir()) == []  # a writer creates the file with its first experiment, not before


def test_an_older_file_is_migrated_by_writers_and_read_through_a_migrated_copy(tmp_path):
    db = tmp_path / "v1.duckdb"
    connection = duckdb.connect(str(db))
    connection.execute(_V1_TABLES)  # a version 1 file's tables (migrations rebuild every view)
    connection.execute("INSERT INTO paretune_schema (version) VALUES (1)")
    connection.execute("INSERT INTO experiments (name, spec) VALUES (?, ?)", [SPEC.name, SPEC.to_json()])
    connection.execute("INSERT INTO suggestions (experiment_id, assignments) VALUES (1, '{\"x\": 0.5}')")
    connection.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with DuckDBStorage(db, read_only=True) as reader:
        assert reader.get_experiment(1).budget == 100
        assert reader.list_suggestions(1)[0].state == "open"
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    with DuckDBStorage(db) as writer:
        assert writer.cancel_suggestions(1, [1], "cancelled: test") == [1]  # a state version 1 did not know
        assert [row["version"] for row in writer.query("SELECT version FROM paretune_schema ORDER BY 1")] == list(
            range(1, SCHEMA_VERSION + 1))
        assert writer.query("SELECT parameter, active FROM observation_parameters") == []  # version 3's view


def test_a_reader_that_republishes_never_attaches_the_published_copy_writable(tmp_path, monkeypatch):
    """A reader that finds the copy stale publishes a new one, upgraded (when the file is older)
    before the rename: a published copy is only ever replaced, since other readers may hold it
    open. Before, every republish attached the published copy writable, which a reader holding
    it in the same process refused outright."""
    from paretune.storage import session

    db = tmp_path / "stale.duckdb"
    seeded(db)
    replica = Path(f"{db}.read")
    later = replica.stat().st_mtime_ns + 10**9
    os.utime(db, ns=(later, later))  # a writer committed after the copy was published, then died
    attached: list[tuple[Path, bool]] = []
    plain = session.attach

    def recorded(connection, path, *, read_only, timeout_s):
        attached.append((Path(path), read_only))
        return plain(connection, path, read_only=read_only, timeout_s=timeout_s)

    monkeypatch.setattr(session, "attach", recorded)
    with DuckDBStorage(db, read_only=True) as reader:
        assert len(reader.observations(1)) == 3
    assert (replica, False) not in attached and (replica, True) in attached
    assert any(not read_only and path.name.endswith(".tmp") for path, read_only in attached)  # the copy, republished


@pytest.mark.skipif(shutil.which("chattr") is None, reason="chattr is not installed")
def test_an_immutable_file_is_read_but_never_written(tmp_path):
    db = tmp_path / "frozen.duckdb"
    experiment_id = seeded(db)
    os.remove(f"{db}.read")  # the copy a reader must now make for itself
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem or container does not allow immutable files")
    try:
        with pytest.raises(StorageError, match="the file is read-only"):
            DuckDBStorage(db)
        with DuckDBStorage(db, read_only=True) as reader:
            assert reader.progress(experiment_id).observations == 3
        result = subprocess.run([sys.executable, "-m", "paretune.cli", "--db", str(db), "list"],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0 and "3/100" in result.stdout, result.stderr
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)

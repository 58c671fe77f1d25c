"""One DuckDB file shared by many processes: who may write when, and what readers open.

DuckDB lets one process at a time hold a database file, and while it does, every other process
is refused, `read_only=True` ones too. A sweep runs for days; users must read while it writes,
and two sweeps (or a sweep and `paretune observe`) may share one file. So:

- **Writers hold the file only for a transaction.** Every write session takes an exclusive
  `flock` on ``<db>.lock`` (paretune's processes queue there, never in DuckDB's lock), attaches
  the file, writes, and detaches it (DuckDB checkpoints on detach, so the file alone is whole).
- **Readers read a published copy, ``<db>.read``.** After each write session the writer, still
  holding the lock, copies the checkpointed file to a temporary name and renames it over
  ``<db>.read``. A rename never waits for readers: one that has the old copy open keeps a
  consistent snapshot, the next one opens the new copy. Readers therefore never block a writer,
  never see half a transaction, and see counts that only grow.
- A reader that finds the copy older than the file (a writer died between its commit and its
  publish, or the file predates this scheme) takes the lock and republishes it, from DuckDB's
  own recovery of the write-ahead log, without writing the database file itself.

`DatabaseFiles.inspect` names what is wrong with a path (missing, a directory, no permission, not
DuckDB, another application's database) before DuckDB is asked to open anything, so a refused
command writes nothing and DuckDB never tries to download an extension for a foreign file.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from paretune.storage.base import StorageError

# DuckDB must never reach for the network: a foreign file (SQLite, Parquet) would otherwise make
# it try to install a scanner extension.
SAFE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file
LOCK_SUFFIX, READ_SUFFIX, WAL_SUFFIX = ".lock", ".read", ".wal"
LOCK_POLL_S = (0.005, 0.1)  # first and longest sleep between attempts to take a busy lock


class DatabaseLocked(StorageError):
    """Another process held the file (or paretune's lock on it) for longer than we would wait."""


class ExperimentBusy(StorageError):
    """Another run is tuning this experiment: one writer per experiment."""


@dataclass(frozen=True)
class DatabaseFiles:
    """The database file and the files paretune keeps beside it."""

    path: Path

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> DatabaseFiles:
        return cls(Path(path).expanduser().absolute())

    @property
    def wal(self) -> Path:
        return self.path.with_name(self.path.name + WAL_SUFFIX)

    @property
    def lock(self) -> Path:
        return self.path.with_name(self.path.name + LOCK_SUFFIX)

    @property
    def replica(self) -> Path:
        """The published copy every reader opens (documented for users' own SQL)."""
        return self.path.with_name(self.path.name + READ_SUFFIX)

    def experiment_lease(self, experiment_id: int) -> Path:
        return self.path.with_name(f"{self.path.name}.experiment-{experiment_id}{LOCK_SUFFIX}")

    # -- what is wrong with a path, before DuckDB is asked ------------------------------------
    def inspect(self, *, for_writing: bool) -> bool:
        """Raise StorageError naming what is wrong with the path; return whether the file exists.

        A writer may create a missing file in an existing folder; a reader may not.
        """
        where = self.path
        if where.is_dir():
            raise StorageError(f"{where} is a directory, not a database file; pass --db FOLDER/paretune.duckdb")
        if not where.exists():
            if not for_writing:
                raise StorageError(f"no database at {where}; check --db (or $PARETUNE_DB), or create an "
                                   "experiment there first with `paretune create SPEC`")
            folder = where.parent
            if not folder.is_dir():
                raise StorageError(f"cannot create {where}: the folder {folder} does not exist; create it first")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise StorageError(f"cannot create {where}: no permission to write in {folder}")
            return False
        if not os.access(where, os.R_OK):
            raise StorageError(f"cannot read {where}: permission denied")
        if for_writing and not _writable(where):
            raise StorageError(f"cannot write {where}: the file is read-only (permissions, an immutable "
                               "attribute or a read-only mount); readers still work, use `paretune list --db`")
        if where.stat().st_size > 0:
            with open(where, "rb") as handle:
                header = handle.read(16)
            if header[8:12] != DUCKDB_MAGIC:
                kind = "an SQLite database" if header.startswith(b"SQLite format 3") else "not a DuckDB database"
                raise StorageError(f"{where} is {kind}; paretune stores experiments in a DuckDB file of its own: "
                                   "pass --db with a new path")
        return True


def _writable(path: Path) -> bool:
    """Write permission on the file itself, as the kernel will judge it (immutable files included)."""
    if not os.access(path, os.W_OK):
        return False
    try:
        with open(path, "r+b"):
            return True
    except OSError as error:
        if error.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
            return False
        raise


# -- paretune's lock on a file: one registry per process ----------------------------------------
class _FileLock:
    """An exclusive `flock` on a lock file, re-entrant within a thread of this process.

    flock locks belong to open file descriptions, so two handles in one process would lock each
    other out; every store of one process shares this object for a given file.
    """

    def __init__(self, path: Path):
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self, timeout_s: float) -> Iterator[None]:
        deadline = time.monotonic() + timeout_s
        if not self._thread_lock.acquire(timeout=max(timeout_s, 0.0)):
            raise DatabaseLocked(f"timed out after {timeout_s:g} s waiting for another thread writing {self.path}")
        try:
            if self._depth == 0:
                self._fd = _acquire_flock(self.path, deadline)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing the descriptor releases the flock
                    self._fd = None
        finally:
            self._thread_lock.release()


def _acquire_flock(path: Path, deadline: float) -> int:
    """An exclusive flock on `path` (created if need be), waiting until `deadline`."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StorageError(f"cannot create the lock file {path}: {error.strerror}") from None
    pause = LOCK_POLL_S[0]
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise DatabaseLocked(f"{path.with_suffix('')} is being written by another paretune process "
                                     "and stayed busy; try again") from None
            time.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_S[1])
            continue
        return fd


HOLDER_BYTES = 256


def _write_holder(fd: int, holder: str) -> None:
    """Note who holds a lease, for other runs' refusals (fixed width: no truncate)."""
    os.pwrite(fd, holder.encode()[:HOLDER_BYTES].ljust(HOLDER_BYTES), 0)


def _read_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextmanager
def experiment_lease(files: DatabaseFiles, experiment_id: int, *, wait_s: float, holder: str) -> Iterator[None]:
    """Hold the right to tune one experiment of this file, waiting up to `wait_s` for it.

    A `flock` on ``<db>.experiment-<id>.lock``: the kernel releases it when its process ends,
    however it ends (SIGKILL included), so a dead sweep never blocks its own resume. Other
    experiments of the same file are leased independently and tuned side by side.
    """
    path = files.experiment_lease(experiment_id)
    try:
        fd = _acquire_flock(path, time.monotonic() + wait_s)
    except DatabaseLocked:
        raise ExperimentBusy(
            f"experiment {experiment_id} of {files.path} is being tuned by another run ({_read_holder(path)}); "
            "one run tunes an experiment at a time: wait for it to end, cancel it, or pass a longer wait"
        ) from None
    _write_holder(fd, holder)
    try:
        yield
    finally:
        os.close(fd)


def holder_description(purpose: str) -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                       "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


_LOCKS: dict[Path, _FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def file_lock(path: Path) -> _FileLock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, _FileLock(path))


# -- attaching the file to a private in-memory DuckDB ------------------------------------------
CATALOG = "paretune"


def host_connection() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB that attaches database files by name.

    Attaching, rather than `duckdb.connect(path)`, keeps each store's view of a file its own:
    DuckDB caches connected databases by path within a process, which would pin a reader to a
    copy the writer has since replaced.
    """
    connection = duckdb.connect(":memory:", config=SAFE_CONFIG)
    connection.execute("SET enable_progress_bar = false")  # it would print into users' output
    return connection


def attach(connection: duckdb.DuckDBPyConnection, path: Path, *, read_only: bool, timeout_s: float) -> None:
    """Attach `path` as the default catalog, waiting out another process's DuckDB lock."""
    mode = " (READ_ONLY)" if read_only else ""
    statement = f"ATTACH '{_quote(str(path))}' AS {CATALOG}{mode}"
    deadline = time.monotonic() + timeout_s
    pause = LOCK_POLL_S[0]
    while True:
        try:
            connection.execute(statement)
            break
        except duckdb.IOException as error:
            text = str(error)
            if "lock" not in text.lower():
                raise StorageError(f"cannot open {path}: {text}") from None
            if time.monotonic() >= deadline:
                raise DatabaseLocked(
                    f"{path} is held by another process outside paretune: {_lock_holder(text)}. "
                    f"While a sweep runs, read {path.name}{READ_SUFFIX} or use paretune.connect(); "
                    "close the other program and try again"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_S[1] * 5)
        except duckdb.Error as error:
            raise StorageError(f"cannot open {path}: {error}") from None
    connection.execute(f"USE {CATALOG}")


def detach(connection: duckdb.DuckDBPyConnection) -> None:
    connection.execute("USE memory")
    connection.execute(f"DETACH {CATALOG}")


def _lock_holder(message: str) -> str:
    marker = "Conflicting lock is held in"
    return message[message.index(marker):].rstrip(". ") if marker in message else message


def _quote(text: str) -> str:
    return text.replace("'", "''")


# -- the published copy ---------------------------------------------------------------------------
def replica_is_current(files: DatabaseFiles) -> bool:
    """True when the published copy is at least as new as the file and its write-ahead log."""
    try:
        published = files.replica.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    newest = files.path.stat().st_mtime_ns
    try:
        newest = max(newest, files.wal.stat().st_mtime_ns)
    except FileNotFoundError:
        pass
    return published >= newest


def publish_replica(files: DatabaseFiles, prepare: Callable[[Path], None] | None = None) -> None:
    """Copy the (checkpointed, unattached) file over the published copy, atomically.

    Call with paretune's lock held and the file detached, so its bytes are one committed state.
    `prepare` runs on the copy before it is published (a reader's schema upgrade): a published
    copy is never changed, since readers may have it open.
    """
    temporary = files.replica.with_name(f"{files.replica.name}.{os.getpid()}.tmp")
    shutil.copyfile(files.path, temporary)
    if prepare is not None:
        prepare(temporary)
    os.replace(temporary, files.replica)


def publish_recovered_replica(files: DatabaseFiles, timeout_s: float,
                              prepare: Callable[[Path], None] | None = None) -> None:
    """Publish the copy from a file whose writer died before checkpointing its log.

    DuckDB replays the write-ahead log when it opens the file read-only; copying the database
    from there leaves the file itself untouched (the next writer checkpoints it). `prepare`: as
    in `publish_replica`.
    """
    temporary = files.replica.with_name(f"{files.replica.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    connection = duckdb.connect(":memory:", config=SAFE_CONFIG)
    try:
        attach(connection, files.path, read_only=True, timeout_s=timeout_s)
        connection.execute("USE memory")
        connection.execute(f"ATTACH '{_quote(str(temporary))}' AS published")
        connection.execute(f"COPY FROM DATABASE {CATALOG} TO published")
        connection.execute("DETACH published")
    finally:
        connection.close()
    if prepare is not None:
        prepare(temporary)
    os.replace(temporary, files.replica)

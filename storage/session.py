"""How a store holds its DuckDB file: the session protocol of `storage/files.py`, per store.

A writer's session takes paretune's lock, attaches the file, migrates an older one, and on its
end detaches (DuckDB checkpoints) and publishes the copy readers open; a reader's session
attaches the newest published copy (republishing a stale one) and keeps it between calls.
`batch()` stretches one session over several calls. `DuckDBStorage` (the data access) asks
this object for a connection and never touches the files itself.

    files = FileSession("paretune.duckdb", read_only=False, lock_timeout_s=60)
    with files.transaction(create=True) as db:   # one session, one transaction
        db.execute("INSERT ...")
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

import duckdb

from paretune.storage.base import StorageError
from paretune.storage.files import (
    DatabaseFiles,
    DatabaseLocked,
    attach,
    detach,
    file_lock,
    host_connection,
    publish_recovered_replica,
    publish_replica,
    replica_is_current,
)
from paretune.storage.schema import SCHEMA_VERSION, ForeignDatabaseError, SchemaTooNewError, check_version, current_version, migrate


class FileSession:
    """One store's hold on its file: who may write when, and which copy a reader attaches."""

    def __init__(self, path: str, *, read_only: bool, lock_timeout_s: float):
        self.read_only = read_only
        self.files = DatabaseFiles.of(path)
        self._timeout = lock_timeout_s
        self._guard = threading.RLock()
        self._host = host_connection()
        self._depth = 0
        self._batches = 0
        self._release: ExitStack | None = None  # set while a writer holds the file
        self._wrote = False
        self._attached: tuple[int, int] | None = None  # (device, inode) of the copy a reader has attached
        try:
            if self.files.inspect(for_writing=not read_only):
                if not self.files.replica.exists():  # only paretune publishes a copy: then the file is ours
                    self._refuse_foreign_file()  # before anything is created beside a file that may not be ours
                with self.session():
                    pass  # a writer migrates an older file; a reader attaches the published copy
        except BaseException:
            self._host.close()
            raise

    # -- sessions: how long a file is held --------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the file across several calls: one attach, one publish at the end.

        For a writer, bursts of writes (a flow recording several trial events at once): other
        writers wait while it is held, so keep the block short, and the file is taken by the
        first call inside, so a batch that stores nothing creates nothing. For a reader, one
        published copy for every call inside: a report built from several queries is consistent.
        """
        with self._guard:
            self._batches += 1
            try:
                yield
            finally:
                self._batches -= 1
                if not self._batches and self._release is not None:
                    self._release.close()

    @contextmanager
    def session(self, *, create: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._guard:
            if self._depth or self._release is not None:
                self._depth += 1
                try:
                    yield self._host
                finally:
                    self._depth -= 1
                return
            if self.read_only:
                keep_attached = (self._batches and self._attached is not None) or self._attach_published_copy()
                self._depth = 1
                try:
                    yield self._host
                finally:
                    self._depth = 0
                    if not keep_attached:
                        detach(self._host)
                return
            if not create and not self.files.path.exists():
                raise StorageError(f"no database at {self.files.path} yet: it is created with the first experiment")
            release = ExitStack()
            release.enter_context(file_lock(self.files.lock).held(self._timeout))
            self._wrote = False
            try:
                attach(self._host, self.files.path, read_only=False, timeout_s=self._timeout)
                release.callback(self._end_write_session)
                self._upgrade_schema()
            except BaseException:
                release.close()
                raise
            self._release, self._depth = release, 1
            try:
                yield self._host
            finally:
                self._depth = 0
                if not self._batches:
                    release.close()

    def _end_write_session(self) -> None:
        """Detach (DuckDB checkpoints) and, when something was written, publish the copy."""
        self._release = None
        detach(self._host)
        if self._wrote:
            publish_replica(self.files)

    def _upgrade_schema(self) -> None:
        """A writer brings an older file forward; another application's file, or a newer
        paretune's, is refused untouched."""
        try:
            version = current_version(self._host)
            check_version(version)
            if version < SCHEMA_VERSION:
                migrate(self._host)
                self._wrote = True
        except (ForeignDatabaseError, SchemaTooNewError) as error:
            raise StorageError(f"{self.files.path}: {error}") from None

    def _attach_published_copy(self) -> bool:
        """Attach the newest published copy (republishing a stale one), or the file itself when
        no copy can be kept beside it (a read-only folder, where nothing can be writing).

        Returns whether it may stay attached between calls: a copy may (it is replaced, never
        changed, so holding it blocks nobody), the file itself may not.
        """
        source = self.files.replica
        if not replica_is_current(self.files):
            source = self._republish() or self.files.path
        stat = source.stat()
        key = (stat.st_dev, stat.st_ino)
        if self._attached == key:
            return True
        if self._attached is not None:
            detach(self._host)
            self._attached = None
        attach(self._host, source, read_only=True, timeout_s=self._timeout)
        try:
            version = current_version(self._host)
            check_version(version)
            if version < SCHEMA_VERSION:
                raise SchemaTooNewError(f"this database has schema version {version}, older than this paretune's "
                                        f"{SCHEMA_VERSION}, in a folder where it cannot be upgraded; open it once "
                                        "with a write command where it is writable")
        except (ForeignDatabaseError, SchemaTooNewError) as error:
            detach(self._host)
            raise StorageError(f"{self.files.path}: {error}") from None
        self._attached = key if source == self.files.replica else None
        return self._attached is not None

    def _republish(self) -> os.PathLike[str] | None:
        """Bring the published copy up to date; None when this folder cannot hold one.

        While a writer holds the file, the copy it will publish when it is done is on its way:
        a reader takes the one it has rather than waiting (it is one write session behind, and
        consistent). It waits only for a first copy.
        """
        if not os.access(self.files.path.parent, os.W_OK | os.X_OK):
            return None
        wait_s = self._timeout if not self.files.replica.exists() else 0.0
        with ExitStack() as held:
            try:
                held.enter_context(file_lock(self.files.lock).held(wait_s))
            except DatabaseLocked:
                return self.files.replica
            if replica_is_current(self.files):
                return self.files.replica
            if self.files.wal.exists():
                publish_recovered_replica(self.files, self._timeout, prepare=self._upgrade_copy)
            else:
                publish_replica(self.files, prepare=self._upgrade_copy)
        return self.files.replica

    def _refuse_foreign_file(self) -> None:
        """Refuse another application's DuckDB file, or a newer paretune's, leaving it untouched."""
        with self._schema_check(self.files.path, read_only=True) as connection:
            check_version(current_version(connection))

    def _upgrade_copy(self, copy: Path) -> None:
        """Migrate a copy about to be published (never the file) when the file predates this
        paretune: before it is published, since readers may hold the published copy open."""
        with self._schema_check(copy, read_only=False) as connection:
            migrate(connection)

    @contextmanager
    def _schema_check(self, path: Path, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """`path` attached on a connection of its own, a schema refusal raised as StorageError."""
        connection = host_connection()
        try:
            attach(connection, path, read_only=read_only, timeout_s=self._timeout)
            try:
                yield connection
            except (ForeignDatabaseError, SchemaTooNewError) as error:
                raise StorageError(f"{self.files.path}: {error}") from None
            finally:
                detach(connection)
        finally:
            connection.close()

    @contextmanager
    def transaction(self, *, create: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.read_only:
            raise StorageError(f"this store was opened read-only ({self.files.path}); open it without read_only to write")
        with self.session(create=create) as db:
            db.execute("BEGIN TRANSACTION")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._wrote = True

    def rows(self, sql: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.session() as db:
            cursor = db.execute(sql, parameters or [])
            columns = [d[0] for d in cursor.description or []]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def sql_connection(self) -> duckdb.DuckDBPyConnection:
        """Hand this reader's DuckDB connection over for SQL of your own; the store is done.

        The connection holds one consistent copy for as long as it stays open: reconnect to see
        newer data.
        """
        if not self.read_only:
            raise StorageError("open the store with read_only=True to hand its connection over")
        with self._guard:
            self._attach_published_copy()
            self._attached = None  # no longer this store's to detach
            return self._host

    def close(self) -> None:
        with self._guard:
            if self._attached is not None:
                detach(self._host)
                self._attached = None
            self._host.close()

"""Artifacts (checkpoints, predictions, exported tables) in a local folder or on S3.

One fsspec-backed store for both: ``ArtifactStore("artifacts")`` or
``ArtifactStore("s3://bucket/paretune", endpoint_url=...)``. Tables are exported by DuckDB
itself, writing through the same fsspec filesystem (`duckdb.register_filesystem`), so no
DuckDB extension is needed.
"""

from __future__ import annotations

import os
import posixpath
from contextlib import contextmanager
from typing import Any, Iterator

import duckdb
from fsspec.core import url_to_fs

from paretune.storage.base import StorageError

EXPORT_FORMATS = {"parquet": "(FORMAT parquet)", "csv": "(FORMAT csv, HEADER true)", "json": "(FORMAT json)"}


def _reach_errors() -> tuple[type[BaseException], ...]:
    """What a filesystem raises when a location cannot be reached or written (S3's client included)."""
    errors: tuple[type[BaseException], ...] = (OSError, duckdb.IOException)
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return errors
    return errors + (BotoCoreError, ClientError)


@contextmanager
def _reaching(where: str) -> Iterator[None]:
    """One clear StorageError for a location that cannot be written, whatever the filesystem."""
    try:
        yield
    except _reach_errors() as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
        raise StorageError(f"cannot write to {where}: {detail}") from None


class ArtifactStore:
    def __init__(self, root: str, **storage_options: Any):
        if "://" in root and not root.startswith(("s3://", "file://", "memory://")):
            raise StorageError(f"artifact root {root!r}: use a local folder, file://, memory:// or s3:// URL")
        if "://" not in root and os.path.exists(root) and not os.path.isdir(root):
            raise StorageError(f"{root} is a file; give a folder (or an s3:// URL) to hold the artifacts")
        self.fs, self.root = url_to_fs(root, **_s3_options(root, storage_options))
        self.protocol = root.split("://", 1)[0] if "://" in root else "file"
        with _reaching(root):
            self.fs.makedirs(self.root, exist_ok=True)

    def path(self, key: str) -> str:
        """The full path of `key` inside the store (refusing keys that escape it)."""
        clean = posixpath.normpath(key.lstrip("/"))
        if clean.startswith("..") or clean in ("", "."):
            raise StorageError(f"artifact key {key!r} must be a relative path inside the store")
        return posixpath.join(self.root, clean)

    def url(self, key: str) -> str:
        path = self.path(key)
        return path if self.protocol == "file" else f"{self.protocol}://{path}"

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self.path(key)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with self.fs.open(path, "wb") as handle:
            handle.write(data)
        return self.url(key)

    def put_file(self, local_path: str, key: str) -> str:
        path = self.path(key)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.fs.put_file(local_path, path)
        return self.url(key)

    def get_bytes(self, key: str) -> bytes:
        with self.fs.open(self.path(key), "rb") as handle:
            return handle.read()

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def list(self, prefix: str = "") -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base)
        return sorted(posixpath.relpath(p, self.root) for p in found)

    def export_query(self, connection: duckdb.DuckDBPyConnection, sql: str, key: str, fmt: str = "parquet") -> str:
        """Write the result of `sql` as a table file at `key`, by DuckDB's own COPY."""
        if fmt not in EXPORT_FORMATS:
            raise StorageError(f"export format must be one of {sorted(EXPORT_FORMATS)}, got {fmt!r}")
        path = self.path(key)
        with _reaching(self.url(key)):
            return self._copy(connection, sql, key, path, fmt)

    def _copy(self, connection: duckdb.DuckDBPyConnection, sql: str, key: str, path: str, fmt: str) -> str:
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        copy = f"COPY ({sql}) TO '{{target}}' {EXPORT_FORMATS[fmt]}"
        if self.protocol == "file":
            connection.execute(copy.format(target=_quote(path)))
            return self.url(key)
        # This store's filesystem (its endpoint, its credentials) serves the COPY, then leaves.
        for name in set(connection.list_filesystems()) & set(_protocols(self.fs)):
            connection.unregister_filesystem(name)
        connection.register_filesystem(self.fs)
        try:
            connection.execute(copy.format(target=_quote(self.url(key))))
        finally:
            for name in set(connection.list_filesystems()) & set(_protocols(self.fs)):
                connection.unregister_filesystem(name)
        return self.url(key)


def _s3_options(root: str, options: dict[str, Any]) -> dict[str, Any]:
    """Let `$PARETUNE_S3_ENDPOINT_URL` point s3:// at MinIO, moto or another S3 API."""
    if root.startswith("s3://") and "endpoint_url" not in options and os.environ.get("PARETUNE_S3_ENDPOINT_URL"):
        return options | {"endpoint_url": os.environ["PARETUNE_S3_ENDPOINT_URL"]}
    return options


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _quote(text: str) -> str:
    return text.replace("'", "''")

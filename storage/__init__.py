"""Persistence: the storage interface, the embedded DuckDB store, and the artifact store."""

from storage.base import Storage, StorageError
from storage.duckdb_store import DatabaseLocked, DuckDBStorage, connect, default_db_path
from storage.records import (
    ExperimentRecord,
    ObservationRecord,
    Progress,
    RunEnvironment,
    RunRecord,
    SuggestionRecord,
)

__all__ = [
    "DatabaseLocked",
    "DuckDBStorage",
    "ExperimentRecord",
    "ObservationRecord",
    "Progress",
    "RunEnvironment",
    "RunRecord",
    "Storage",
    "StorageError",
    "SuggestionRecord",
    "connect",
    "default_db_path",
]

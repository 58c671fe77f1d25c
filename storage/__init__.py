"""Persistence: the storage interface, the embedded DuckDB store, and the artifact store."""

from paretune.storage.base import Storage, StorageError
from paretune.storage.duckdb_store import DatabaseLocked, DuckDBStorage, connect, default_db_path
from paretune.storage.records import (
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

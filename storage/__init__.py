"""Persistence: the storage interface, the embedded DuckDB store, and the artifact store."""

from storage.base import Storage, StorageError
from storage.duckdb_store import DuckDBStorage, default_db_path
from storage.records import ExperimentRecord, ObservationRecord, Progress, RunRecord, SuggestionRecord

__all__ = [
    "DuckDBStorage",
    "ExperimentRecord",
    "ObservationRecord",
    "Progress",
    "RunRecord",
    "Storage",
    "StorageError",
    "SuggestionRecord",
    "default_db_path",
]

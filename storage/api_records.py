"""What only the SigOpt API server keeps: API tokens, projects and queued suggestions.

Tokens are stored as their SHA-256 only: a token is 256 random bits, so a plain hash is as good
as a slow one, and the token itself is shown once, when it is created. Checking a token compares
hashes in constant time (`hmac.compare_digest`) against every live token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paretune.optimizer import ObservationError, validate_assignments, validate_task
from paretune.storage.base import StorageError
from paretune.storage.duckdb_store import DuckDBStorage

TOKEN_PREFIX = "pt_"


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class QueuedSuggestion:
    id: int
    experiment_id: int
    assignments: dict[str, Any]
    task: str | None
    created_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- tokens -----------------------------------------------------------------------------------------
def create_token(storage: DuckDBStorage, name: str, *, read_only: bool = False) -> tuple[ApiToken, str]:
    """A new token: its record, and the token itself (shown once; only its hash is stored)."""
    if not isinstance(name, str) or not name.strip() or not name.isprintable():
        raise StorageError(f"a token needs a non-empty, printable name, got {name!r}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with storage._transaction(create=True) as db:
        (token_id,) = db.execute("INSERT INTO api_tokens (name, token_sha256, read_only) VALUES (?, ?, ?) RETURNING id",
                                 [name, token_hash(token), read_only]).fetchall()[0]
    return get_token(storage, int(token_id)), token


def get_token(storage: DuckDBStorage, ref: int | str) -> ApiToken:
    """By id, or by name (the newest live token of that name)."""
    if isinstance(ref, int) or ref.isdigit():
        rows = storage._rows("SELECT * FROM api_tokens WHERE id = ?", [int(ref)])
    else:
        rows = storage._rows("SELECT * FROM api_tokens WHERE name = ? ORDER BY revoked_at IS NULL DESC, id DESC "
                             "LIMIT 1", [ref])
    if not rows:
        raise StorageError(f"no token {ref!r} in {storage.path}; `paretune token list` shows them")
    return _token(rows[0])


def list_tokens(storage: DuckDBStorage) -> list[ApiToken]:
    if not storage.read_only and not storage.files.path.exists():
        return []
    return [_token(row) for row in storage._rows("SELECT * FROM api_tokens ORDER BY id")]


def revoke_token(storage: DuckDBStorage, ref: int | str) -> ApiToken:
    with storage._transaction() as db:
        token = get_token(storage, ref)
        if token.revoked_at is not None:
            raise StorageError(f"token {token.id} ({token.name}) was already revoked at {token.revoked_at:%Y-%m-%d %H:%M}")
        db.execute("UPDATE api_tokens SET revoked_at = current_timestamp WHERE id = ?", [token.id])
    return get_token(storage, token.id)


def live_token_hashes(storage: DuckDBStorage) -> dict[str, ApiToken]:
    """Hash -> token, for every token not revoked."""
    rows = storage._rows("SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY id")
    return {row["token_sha256"]: _token(row) for row in rows}


def match_token(presented: str, live: dict[str, ApiToken]) -> ApiToken | None:
    """The live token `presented` is, compared in constant time with each one."""
    digest = token_hash(presented)
    found = None
    for stored, token in live.items():
        if hmac.compare_digest(stored, digest):
            found = token
    return found


def _token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(id=row["id"], name=row["name"], read_only=row["read_only"], created_at=row["created_at"],
                    revoked_at=row["revoked_at"])


# -- projects -------------------------------------------------------------------------------------------
def create_project(storage: DuckDBStorage, project_id: str, name: str, metadata: dict[str, Any] | None = None) -> None:
    with storage._transaction(create=True) as db:
        if db.execute("SELECT 1 FROM projects WHERE id = ?", [project_id]).fetchall():
            raise StorageError(f"project {project_id!r} already exists")
        db.execute("INSERT INTO projects (id, name, metadata) VALUES (?, ?, ?)",
                   [project_id, name, json.dumps(metadata or {})])


def get_project(storage: DuckDBStorage, project_id: str) -> dict[str, Any] | None:
    """A project as stored; one that experiments name but nobody created reads as named after its id."""
    rows = storage._rows("SELECT id, name, metadata, created_at FROM projects WHERE id = ?", [project_id])
    if rows:
        return rows[0] | {"metadata": json.loads(rows[0]["metadata"])}
    used = storage._rows("SELECT min(created_at) AS created_at FROM experiments WHERE project = ? HAVING count(*) > 0",
                         [project_id])
    return {"id": project_id, "name": project_id, "metadata": {}, "created_at": used[0]["created_at"]} if used else None


def list_projects(storage: DuckDBStorage) -> list[dict[str, Any]]:
    ids = storage._rows("SELECT id FROM projects UNION SELECT project FROM experiments WHERE project IS NOT NULL "
                        "ORDER BY 1")
    return [project for row in ids if (project := get_project(storage, row["id"])) is not None]


# -- queued suggestions -------------------------------------------------------------------------------
def queue_suggestion(storage: DuckDBStorage, experiment_id: int, assignments: dict[str, Any],
                     task: str | None = None) -> QueuedSuggestion:
    """Assignments to hand out as the experiment's next suggestion (SigOpt's queued suggestions)."""
    with storage._transaction() as db:
        spec = storage.get_experiment(experiment_id).spec
        try:
            clean, task = validate_assignments(spec, assignments), validate_task(spec, task)
        except ObservationError as error:
            raise StorageError(f"queued suggestion refused: {error}") from None
        (queued_id,) = db.execute("INSERT INTO queued_suggestions (experiment_id, assignments, task) VALUES (?, ?, ?) "
                                  "RETURNING id", [experiment_id, json.dumps(clean), task]).fetchall()[0]
    return get_queued(storage, int(queued_id))


def get_queued(storage: DuckDBStorage, queued_id: int) -> QueuedSuggestion:
    rows = storage._rows("SELECT * FROM queued_suggestions WHERE id = ?", [queued_id])
    if not rows:
        raise StorageError(f"no queued suggestion {queued_id}")
    return _queued(rows[0])


def list_queued(storage: DuckDBStorage, experiment_id: int) -> list[QueuedSuggestion]:
    return [_queued(row) for row in storage._rows(
        "SELECT * FROM queued_suggestions WHERE experiment_id = ? ORDER BY id", [experiment_id])]


def delete_queued(storage: DuckDBStorage, queued_id: int) -> None:
    with storage._transaction() as db:
        get_queued(storage, queued_id)
        db.execute("DELETE FROM queued_suggestions WHERE id = ?", [queued_id])


def _queued(row: dict[str, Any]) -> QueuedSuggestion:
    return QueuedSuggestion(id=row["id"], experiment_id=row["experiment_id"], assignments=json.loads(row["assignments"]),
                            task=row["task"], created_at=row["created_at"])

"""The DuckDB schema as an ordered list of forward migrations, and the views over it.

A file records the highest version applied in `paretune_schema`; a writer opening it applies
the rest, all in one transaction. Never edit a released migration: append a new one. Views hold
no data: after any migration they are dropped and created again from `VIEWS`, the current
definitions (storage/views.py).
"""

from __future__ import annotations

import re
from typing import Callable

import duckdb

from paretune.storage.views import VIEWS

_V1_TABLES = """
CREATE TABLE paretune_schema (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE SEQUENCE experiments_id START 1;
CREATE TABLE experiments (
    id BIGINT PRIMARY KEY DEFAULT nextval('experiments_id'),
    name VARCHAR NOT NULL,
    spec JSON NOT NULL,
    state VARCHAR NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'completed', 'archived')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- The spec's metrics in relational form, so reports and views are plain SQL.
CREATE TABLE experiment_metrics (
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    name VARCHAR NOT NULL,
    objective VARCHAR NOT NULL CHECK (objective IN ('maximize', 'minimize')),
    strategy VARCHAR NOT NULL CHECK (strategy IN ('optimize', 'constraint', 'store')),
    threshold DOUBLE CHECK (threshold IS NULL OR isfinite(threshold)),
    optimize_rank INTEGER CHECK (optimize_rank IN (1, 2)),
    PRIMARY KEY (experiment_id, name)
);

CREATE SEQUENCE suggestions_id START 1;
CREATE TABLE suggestions (
    id BIGINT PRIMARY KEY DEFAULT nextval('suggestions_id'),
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    assignments JSON NOT NULL,
    state VARCHAR NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completed', 'failed', 'expired')),
    worker VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE SEQUENCE runs_id START 1;
CREATE TABLE runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('runs_id'),
    name VARCHAR NOT NULL,
    experiment_id BIGINT REFERENCES experiments (id),
    suggestion_id BIGINT REFERENCES suggestions (id),
    status VARCHAR NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    parameters JSON NOT NULL DEFAULT '{}',
    metadata JSON NOT NULL DEFAULT '{}',
    git_commit VARCHAR,
    host VARCHAR,
    device VARCHAR,
    failure_reason VARCHAR,
    started_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    ended_at TIMESTAMPTZ
);

CREATE TABLE run_metrics (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    name VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    PRIMARY KEY (run_id, name)
);

CREATE SEQUENCE observations_id START 1;
CREATE TABLE observations (
    id BIGINT PRIMARY KEY DEFAULT nextval('observations_id'),
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    suggestion_id BIGINT NOT NULL UNIQUE REFERENCES suggestions (id),
    run_id BIGINT REFERENCES runs (id),
    failed BOOLEAN NOT NULL DEFAULT false,
    failure_reason VARCHAR,
    duration_s DOUBLE CHECK (duration_s IS NULL OR (isfinite(duration_s) AND duration_s >= 0)),
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    CHECK (failed OR failure_reason IS NULL)
);

CREATE TABLE observation_values (
    observation_id BIGINT NOT NULL REFERENCES observations (id),
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    PRIMARY KEY (observation_id, metric)
);

-- Per-epoch values a trial (or any run) reports while it trains.
CREATE TABLE checkpoints (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    epoch INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (run_id, epoch, metric)
);
"""


# Version 2: suggestions and runs can end `cancelled` (their flow run was cancelled, as opposed
# to `expired`: it died), and each experiment stores the observation budget in force, so an
# override (`--budget`, a nightly sweep) is what every report shows. DuckDB cannot alter a CHECK
# constraint, so the tables it touches are rebuilt, children first, with every row kept.
_V2_REBUILT = ("checkpoints", "run_metrics", "observation_values", "observations", "runs", "suggestions")
_V2_TABLES = """
CREATE TABLE suggestions (
    id BIGINT PRIMARY KEY DEFAULT nextval('suggestions_id'),
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    assignments JSON NOT NULL,
    state VARCHAR NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'completed', 'failed', 'expired', 'cancelled')),
    worker VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    started_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE runs (
    id BIGINT PRIMARY KEY DEFAULT nextval('runs_id'),
    name VARCHAR NOT NULL,
    experiment_id BIGINT REFERENCES experiments (id),
    suggestion_id BIGINT REFERENCES suggestions (id),
    status VARCHAR NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    parameters JSON NOT NULL DEFAULT '{}',
    metadata JSON NOT NULL DEFAULT '{}',
    git_commit VARCHAR,
    host VARCHAR,
    device VARCHAR,
    failure_reason VARCHAR,
    started_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    ended_at TIMESTAMPTZ
);

CREATE TABLE run_metrics (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    name VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    PRIMARY KEY (run_id, name)
);

CREATE TABLE observations (
    id BIGINT PRIMARY KEY DEFAULT nextval('observations_id'),
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    suggestion_id BIGINT NOT NULL UNIQUE REFERENCES suggestions (id),
    run_id BIGINT REFERENCES runs (id),
    failed BOOLEAN NOT NULL DEFAULT false,
    failure_reason VARCHAR,
    duration_s DOUBLE CHECK (duration_s IS NULL OR (isfinite(duration_s) AND duration_s >= 0)),
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    CHECK (failed OR failure_reason IS NULL)
);

CREATE TABLE observation_values (
    observation_id BIGINT NOT NULL REFERENCES observations (id),
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    PRIMARY KEY (observation_id, metric)
);

CREATE TABLE checkpoints (
    run_id BIGINT NOT NULL REFERENCES runs (id),
    epoch INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (run_id, epoch, metric)
);
"""


def _v1(db: duckdb.DuckDBPyConnection) -> None:
    db.execute(_V1_TABLES)


def _v2(db: duckdb.DuckDBPyConnection) -> None:
    for table in _V2_REBUILT:
        db.execute(f"CREATE TEMP TABLE {table}_v1 AS SELECT * FROM {table}")
        db.execute(f"DROP TABLE {table}")
    db.execute(_V2_TABLES)
    for table in reversed(_V2_REBUILT):
        db.execute(f"INSERT INTO {table} SELECT * FROM temp.{table}_v1")
        db.execute(f"DROP TABLE temp.{table}_v1")
    db.execute("ALTER TABLE experiments ADD COLUMN budget BIGINT")
    db.execute("UPDATE experiments SET budget = CAST(json_extract(spec, '$.observation_budget') AS BIGINT)")


# Version 3: the rest of SigOpt's definition. Experiments keep their `project`, their tasks (a
# cost each) and their parameters and conditionals as rows; suggestions and observations carry
# their task, observations their metadata, and values their standard deviation. Inactive
# parameters stay out of a suggestion's assignments, so they read as NULL.
_V3_OBSERVATION_VALUES = """
CREATE TABLE observation_values (
    observation_id BIGINT NOT NULL REFERENCES observations (id),
    metric VARCHAR NOT NULL,
    value DOUBLE NOT NULL CHECK (isfinite(value)),
    value_stddev DOUBLE CHECK (value_stddev IS NULL OR (isfinite(value_stddev) AND value_stddev >= 0)),
    PRIMARY KEY (observation_id, metric)
);
"""
_V3_TABLES = """
ALTER TABLE experiments ADD COLUMN project VARCHAR;
UPDATE experiments SET project = json_extract_string(spec, '$.project');
ALTER TABLE suggestions ADD COLUMN task VARCHAR;
ALTER TABLE observations ADD COLUMN task VARCHAR;
ALTER TABLE observations ADD COLUMN metadata JSON DEFAULT '{}';

CREATE TABLE experiment_tasks (
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    name VARCHAR NOT NULL,
    cost DOUBLE NOT NULL CHECK (cost > 0 AND cost <= 1),
    PRIMARY KEY (experiment_id, name)
);

-- The spec's parameters and conditionals in relational form (observation_parameters reads them).
CREATE TABLE experiment_parameters (
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    name VARCHAR NOT NULL,
    type VARCHAR NOT NULL CHECK (type IN ('double', 'int', 'categorical', 'conditional')),
    PRIMARY KEY (experiment_id, name)
);
INSERT INTO experiment_parameters
SELECT e.id, json_extract_string(p, '$.name'), json_extract_string(p, '$.type')
FROM experiments e, unnest(json_extract(e.spec, '$.parameters[*]')) t(p);
"""


def _v3(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("CREATE TEMP TABLE observation_values_v2 AS SELECT * FROM observation_values")
    db.execute("DROP TABLE observation_values")
    db.execute(_V3_OBSERVATION_VALUES)
    db.execute("INSERT INTO observation_values SELECT *, NULL FROM temp.observation_values_v2")
    db.execute("DROP TABLE temp.observation_values_v2")
    db.execute(_V3_TABLES)


# Version 4: the `trial_numbers` view (views are recreated after every migration), and what the
# SigOpt API server keeps. API tokens by hash only (the token itself is shown
# once), SigOpt's projects, and queued suggestions (assignments a user asked to be suggested next).
_V4_TABLES = """
CREATE SEQUENCE api_tokens_id START 1;
CREATE TABLE api_tokens (
    id BIGINT PRIMARY KEY DEFAULT nextval('api_tokens_id'),
    name VARCHAR NOT NULL,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    read_only BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE projects (
    id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    metadata JSON NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE SEQUENCE queued_suggestions_id START 1;
CREATE TABLE queued_suggestions (
    id BIGINT PRIMARY KEY DEFAULT nextval('queued_suggestions_id'),
    experiment_id BIGINT NOT NULL REFERENCES experiments (id),
    assignments JSON NOT NULL,
    task VARCHAR,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
"""


def _v4(db: duckdb.DuckDBPyConnection) -> None:
    db.execute(_V4_TABLES)


# Version 5: early stopping. A trial told to stop at a checkpoint ends `stopped` (its suggestion,
# its run, and its observation, which keeps the values it last reported and the fidelity it
# reached: checkpoints reached / max_checkpoints); every stop-or-continue answer is kept, so a
# resumed flow answers the same. DuckDB cannot alter a CHECK constraint: the tables whose states
# grow are rebuilt with their children, every row kept (`_rebuild_with`).
_V5_STATES = {
    "suggestions": ("'expired', 'cancelled')", "'expired', 'cancelled', 'stopped')"),
    "runs": ("'failed', 'cancelled')", "'failed', 'cancelled', 'stopped')"),
    "observations": ("metadata JSON DEFAULT('{}'),", "metadata JSON DEFAULT('{}'), stopped BOOLEAN DEFAULT(false) NOT NULL, "
                     "fidelity DOUBLE CHECK (fidelity IS NULL OR (fidelity > 0 AND fidelity <= 1)),"),
}
_V5_TABLES = """
-- One row per answer to a trial's checkpoint (SigOpt's should_stop and stopping_reasons).
CREATE TABLE stop_decisions (
    suggestion_id BIGINT NOT NULL,
    checkpoint INTEGER NOT NULL CHECK (checkpoint >= 1),
    should_stop BOOLEAN NOT NULL,
    reasons JSON NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (suggestion_id, checkpoint)
);
"""


def _rebuild_with(db: duckdb.DuckDBPyConnection, edits: dict[str, tuple[str, str]]) -> None:
    """Recreate the `edits` tables (a text replacement in each one's CREATE statement, which may add
    columns) and every table that references them, children dropped first and refilled last,
    every row kept."""
    references = db.execute(
        "SELECT table_name, list(DISTINCT referenced_table) FROM duckdb_constraints() "
        "WHERE constraint_type = 'FOREIGN KEY' GROUP BY table_name").fetchall()
    parents = {table: set(refs) for table, refs in references}
    rebuilt = set(edits)
    while more := {child for child, refs in parents.items() if refs & rebuilt} - rebuilt:
        rebuilt |= more
    order = sorted(rebuilt, key=lambda table: (_depth(table, parents), table))  # parents first
    statements = dict(db.execute("SELECT table_name, sql FROM duckdb_tables() WHERE list_contains(?, table_name)",
                                 [order]).fetchall())
    for table in reversed(order):
        db.execute(f"CREATE TEMP TABLE {table}_kept AS SELECT * FROM {table}")
        db.execute(f"DROP TABLE {table}")
    for table in order:
        old, new = edits.get(table, ("", ""))
        if old and old not in statements[table]:
            raise RuntimeError(f"migration: {table}'s definition has no {old!r}")
        db.execute(statements[table].replace(old, new) if old else statements[table])
        db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM temp.{table}_kept")
        db.execute(f"DROP TABLE temp.{table}_kept")


def _depth(table: str, parents: dict[str, set[str]]) -> int:
    return 1 + max((_depth(p, parents) for p in parents.get(table, ()) if p != table), default=-1)


def _v5(db: duckdb.DuckDBPyConnection) -> None:
    _rebuild_with(db, _V5_STATES)
    db.execute(_V5_TABLES)


MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [_v1, _v2, _v3, _v4, _v5]
SCHEMA_VERSION = len(MIGRATIONS)
VIEW_NAMES = re.findall(r"CREATE VIEW (\w+)", VIEWS)


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer paretune; upgrading the package is the fix."""


class ForeignDatabaseError(RuntimeError):
    """A DuckDB file holding another application's tables, which paretune must not touch."""


def current_version(connection: duckdb.DuckDBPyConnection) -> int:
    """The schema version of the attached default catalog; 0 for an empty database.

    Raises ForeignDatabaseError for a database with tables but no `paretune_schema`.
    """
    try:  # the common case, one cheap query; the catalog is searched only when it fails
        (row,) = connection.execute("SELECT coalesce(max(version), 0) FROM paretune_schema").fetchall()
        return int(row[0])
    except duckdb.CatalogException:
        pass
    tables = {row[0] for row in connection.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
    ).fetchall()}
    if "paretune_schema" not in tables:
        if tables:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise ForeignDatabaseError(f"it is a DuckDB database of another application (tables {shown}; "
                                       "no paretune_schema)")
        return 0
    raise ForeignDatabaseError("its paretune_schema table cannot be read")


def check_version(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"this database has schema version {version} but this paretune knows up to {SCHEMA_VERSION}; "
            "upgrade paretune to open it"
        )


def migrate(connection: duckdb.DuckDBPyConnection) -> int:
    """Apply every pending migration and refresh the views, atomically; return the version in force."""
    version = current_version(connection)
    check_version(version)
    if version == SCHEMA_VERSION:
        return version
    connection.execute("BEGIN TRANSACTION")
    try:
        for view in reversed(VIEW_NAMES):
            connection.execute(f"DROP VIEW IF EXISTS {view}")
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            step(connection)
            connection.execute("INSERT INTO paretune_schema (version) VALUES (?)", [number])
        connection.execute(VIEWS)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION

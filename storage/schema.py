"""The DuckDB schema as an ordered list of forward migrations, and the views over it.

A file records the highest version applied in `paretune_schema`; a writer opening it applies
the rest, all in one transaction. Never edit a released migration: append a new one. Views hold
no data: after any migration they are dropped and created again from `VIEWS`, the current
definitions, so a view changes by editing `VIEWS` and appending a migration that does nothing
else (`refresh_views_only`).
"""

from __future__ import annotations

import re
from typing import Callable

import duckdb

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

VIEWS = """
-- One row per (completed observation, thresholded metric): the value against its threshold.
CREATE VIEW threshold_checks AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id,
       m.name AS metric, m.strategy, m.objective, m.threshold, v.value, v.value_stddev,
       coalesce(CASE WHEN m.objective = 'maximize' THEN v.value >= m.threshold
                     ELSE v.value <= m.threshold END, false) AS meets
FROM observations o
JOIN experiment_metrics m ON m.experiment_id = o.experiment_id AND m.threshold IS NOT NULL
LEFT JOIN observation_values v ON v.observation_id = o.id AND v.metric = m.name
WHERE NOT o.failed AND NOT o.stopped;

-- Per observation: does it meet every threshold, and which it meets or violates.
CREATE VIEW threshold_report AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id, o.failed, o.failure_reason,
       NOT o.failed AND NOT o.stopped AND coalesce(bool_and(t.meets), true) AS meets_all,
       coalesce(list(t.metric ORDER BY t.metric) FILTER (WHERE t.meets), []) AS met,
       coalesce(list(t.metric ORDER BY t.metric) FILTER (WHERE NOT t.meets), []) AS violated
FROM observations o
LEFT JOIN threshold_checks t ON t.observation_id = o.id
GROUP BY o.experiment_id, o.id, o.suggestion_id, o.failed, o.failure_reason, o.stopped;

-- Per completed observation, in one grouped pass: its optimized values and how many of its
-- experiment's thresholds it meets.
CREATE VIEW observation_scores AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id,
       any_value(m.name) FILTER (WHERE m.optimize_rank = 1) AS metric_1,
       any_value(m.objective) FILTER (WHERE m.optimize_rank = 1) AS objective_1,
       max(v.value) FILTER (WHERE m.optimize_rank = 1) AS value_1,
       any_value(m.name) FILTER (WHERE m.optimize_rank = 2) AS metric_2,
       any_value(m.objective) FILTER (WHERE m.optimize_rank = 2) AS objective_2,
       max(v.value) FILTER (WHERE m.optimize_rank = 2) AS value_2,
       count(*) FILTER (WHERE CASE WHEN m.objective = 'maximize' THEN v.value >= m.threshold
                                   ELSE v.value <= m.threshold END) AS thresholds_met
FROM observations o
JOIN observation_values v ON v.observation_id = o.id
JOIN experiment_metrics m ON m.experiment_id = o.experiment_id AND m.name = v.metric
WHERE NOT o.failed AND NOT o.stopped
GROUP BY o.experiment_id, o.id, o.suggestion_id;

-- Each suggestion's trial number within its experiment (1, 2, 3... in the order they were
-- handed out): the number people read in logs, task-run names, reports and the dashboard; the
-- global `suggestion_id` stays the key in the data.
CREATE VIEW trial_numbers AS
SELECT experiment_id, id AS suggestion_id,
       row_number() OVER (PARTITION BY experiment_id ORDER BY id) AS trial
FROM suggestions;

CREATE VIEW experiment_shape AS
SELECT experiment_id,
       count(*) FILTER (WHERE threshold IS NOT NULL) AS thresholds,
       count(*) FILTER (WHERE optimize_rank IS NOT NULL) AS optimized
FROM experiment_metrics GROUP BY experiment_id;

-- Completed observations that meet every threshold and carry every optimized value.
CREATE VIEW feasible_scores AS
SELECT s.*
FROM observation_scores s
JOIN experiment_shape e ON e.experiment_id = s.experiment_id
WHERE s.thresholds_met = e.thresholds
  AND s.value_1 IS NOT NULL AND (e.optimized = 1 OR s.value_2 IS NOT NULL);

CREATE VIEW feasible_observations AS
SELECT o.* FROM observations o JOIN feasible_scores f ON f.observation_id = o.id;

-- What each observation cost in budget units: its task's cost (SigOpt's multitask), else 1; a
-- stopped trial's times the share of its checkpoints it trained (its fidelity).
CREATE VIEW observation_costs AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id, o.task,
       coalesce(t.cost, 1.0) * coalesce(o.fidelity, 1.0) AS cost
FROM observations o
LEFT JOIN experiment_tasks t ON t.experiment_id = o.experiment_id AND t.name = o.task;

-- Every parameter and conditional of every observation, NULL where its conditions left it out.
CREATE VIEW observation_parameters AS
SELECT o.experiment_id, o.id AS observation_id, o.suggestion_id, p.name AS parameter, p.type,
       json_extract(s.assignments, '$."' || p.name || '"') AS value,
       json_extract(s.assignments, '$."' || p.name || '"') IS NOT NULL AS active
FROM observations o
JOIN suggestions s ON s.id = o.suggestion_id
JOIN experiment_parameters p ON p.experiment_id = o.experiment_id;

-- The Pareto frontier of each experiment over its (one or two) optimized metrics, by a
-- sort-and-scan: scores are oriented so larger is better; within each distinct first score only
-- the best second score survives, and it must beat every point with a larger first score. Only
-- full-cost observations compete (a cheaper task's values inform the search, not the result).
-- Every trial's checkpoint curve (`checkpoint`: 1 for its first) with where it was told to stop:
-- the dashboard's curves and stop points.
CREATE VIEW trial_checkpoints AS
SELECT r.experiment_id, r.suggestion_id, r.id AS run_id, s.state,
       dense_rank() OVER (PARTITION BY c.run_id ORDER BY c.epoch) AS checkpoint, c.epoch, c.metric, c.value,
       (SELECT min(d.checkpoint) FROM stop_decisions d WHERE d.suggestion_id = r.suggestion_id AND d.should_stop)
           AS stop_checkpoint
FROM checkpoints c
JOIN runs r ON r.id = c.run_id
JOIN suggestions s ON s.id = r.suggestion_id;

-- Per experiment: trials stopped early and the compute they saved, in trial checkpoints (a stopped
-- trial saves max_checkpoints minus the checkpoints it reached).
CREATE VIEW early_stopping_summary AS
SELECT o.experiment_id, count(*) FILTER (WHERE o.stopped) AS stopped,
       CAST(json_extract(any_value(e.spec), '$.training_monitor.max_checkpoints') AS INTEGER) AS max_checkpoints,
       coalesce(sum(1.0 - o.fidelity) FILTER (WHERE o.stopped), 0)
           * CAST(json_extract(any_value(e.spec), '$.training_monitor.max_checkpoints') AS INTEGER)
           AS checkpoints_saved,
       coalesce(sum(1.0 - o.fidelity) FILTER (WHERE o.stopped), 0) AS full_trials_saved
FROM observations o JOIN experiments e ON e.id = o.experiment_id
GROUP BY o.experiment_id;

CREATE VIEW pareto_frontier AS
WITH scored AS (
    SELECT f.*,
           CASE WHEN objective_1 = 'maximize' THEN value_1 ELSE -value_1 END AS score_1,
           coalesce(CASE WHEN objective_2 = 'maximize' THEN value_2 ELSE -value_2 END, 0) AS score_2
    FROM feasible_scores f
    JOIN observation_costs c ON c.observation_id = f.observation_id AND c.cost = 1
), best_per_score_1 AS (
    SELECT experiment_id, score_1, max(score_2) AS best_score_2
    FROM scored GROUP BY experiment_id, score_1
), staircase AS (
    SELECT experiment_id, score_1, best_score_2,
           max(best_score_2) OVER (PARTITION BY experiment_id ORDER BY score_1 DESC
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS best_score_2_above
    FROM best_per_score_1
)
SELECT s.experiment_id, s.observation_id, s.suggestion_id,
       s.metric_1, s.value_1, s.metric_2, s.value_2, sg.assignments
FROM scored s
JOIN staircase c ON c.experiment_id = s.experiment_id AND c.score_1 = s.score_1
JOIN suggestions sg ON sg.id = s.suggestion_id
WHERE s.score_2 = c.best_score_2
  AND (c.best_score_2_above IS NULL OR c.best_score_2_above < s.score_2);
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

"""Correcting or deleting recorded observations (SigOpt's observation update and delete).

    completed | failed | stopped --revise--> the same trial with new values (or failed), new metadata
    completed | failed | stopped --delete--> no observation; its suggestion `cancelled`

The store's rules apply as they do when a trial closes: the outcome is checked by
`checked_outcome` (the one metric cleaner), the suggestion's state and the run's follow the
observation's (a trial with an observation is `completed`, `stopped` or `failed`; one closed
without any is `cancelled`), and the experiment's state is settled against its budget again.
Its suggestion and assignments stay as recorded.

A delete runs in two transactions, holding the file throughout: DuckDB refuses to delete a row
together with the rows that reference it in one (see `row_rules.DELETE_LEVELS`). The first
withdraws the trials (values gone, each observation failed with the reason WITHDRAWN, its
suggestion `cancelled`), the second deletes the observations. An interrupted delete leaves
failed observations with that reason, which deleting again finishes off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from paretune.storage.base import StorageError
from paretune.storage.records import ObservationRecord
from paretune.storage.row_rules import checked_outcome, json_text, settle_state, upsert_run_metrics

if TYPE_CHECKING:
    from paretune.storage.duckdb_store import DuckDBStorage

WITHDRAWN = "withdrawn: its observation was deleted"


def revise_observation(storage: DuckDBStorage, experiment_id: int, observation_id: int, *,
                       values: dict[str, Any] | None, value_stddevs: dict[str, Any] | None, failed: bool,
                       reason: str | None, metadata: dict[str, Any] | None) -> ObservationRecord:
    """Replace an observation's outcome (values and standard deviations, or a failure with its
    reason) in one transaction; `metadata` replaces the old when given."""
    with storage._transaction() as db:
        rows = db.execute("SELECT suggestion_id, run_id, stopped FROM observations WHERE id = ? AND experiment_id = ?",
                          [observation_id, experiment_id]).fetchall()
        if not rows:
            raise StorageError(f"no observation {observation_id} in experiment {experiment_id}")
        suggestion_id, run_id, stopped = rows[0]
        clean, stddevs = checked_outcome(storage.get_experiment(experiment_id).spec, values=values, failed=failed,
                                         reason=reason, value_stddevs=value_stddevs)
        state = "failed" if failed else "stopped" if stopped else "completed"
        failure_reason = (reason or "unspecified") if failed else None
        db.execute("DELETE FROM observation_values WHERE observation_id = ?", [observation_id])
        db.execute("INSERT INTO observation_values SELECT ?, unnest(?::VARCHAR[]), unnest(?::DOUBLE[]), "
                   "unnest(?::DOUBLE[])", [observation_id, list(clean), list(clean.values()),
                                           [stddevs.get(name) for name in clean]])
        db.execute("UPDATE observations SET failed = ?, failure_reason = ?, metadata = coalesce(?, metadata) "
                   "WHERE id = ?", [failed, failure_reason, None if metadata is None else
                                    json_text(metadata, "metadata"), observation_id])
        db.execute("UPDATE suggestions SET state = ?, updated_at = current_timestamp WHERE id = ?",
                   [state, suggestion_id])
        if run_id is not None:
            upsert_run_metrics(db, run_id, clean)
            db.execute("UPDATE runs SET status = ?, failure_reason = ? WHERE id = ?", [state, failure_reason, run_id])
        settle_state(db, experiment_id)
        (record,) = storage.observation_page(experiment_id, before_id=observation_id + 1, limit=1)
        return record


def delete_observations(storage: DuckDBStorage, experiment_id: int, observation_ids: list[int] | None) -> list[int]:
    """Delete the experiment's observations `observation_ids` (every one when None); the ids deleted.

    Refused, deleting nothing, when an id is not one of the experiment's observations.
    """
    chosen = "" if observation_ids is None else " AND list_contains(?, id)"
    with storage.batch():
        with storage._transaction() as db:
            rows = db.execute(f"SELECT id, suggestion_id FROM observations WHERE experiment_id = ?{chosen} ORDER BY id",
                              [experiment_id] + ([] if observation_ids is None else [list(observation_ids)])).fetchall()
            missing = sorted(set(observation_ids or ()) - {row[0] for row in rows})
            if missing:
                raise StorageError(f"no observation {missing[0]} in experiment {experiment_id}")
            ids, suggestions = [row[0] for row in rows], [row[1] for row in rows]
            db.execute("DELETE FROM observation_values WHERE list_contains(?, observation_id)", [ids])
            db.execute("UPDATE observations SET failed = true, failure_reason = ? WHERE list_contains(?, id)",
                       [WITHDRAWN, ids])
            db.execute("UPDATE suggestions SET state = 'cancelled', updated_at = current_timestamp "
                       "WHERE list_contains(?, id)", [suggestions])
        with storage._transaction() as db:
            db.execute("DELETE FROM observations WHERE list_contains(?, id)", [ids])
            settle_state(db, experiment_id)
    return ids


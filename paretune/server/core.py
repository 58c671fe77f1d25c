"""SigOpt's core API: experiments, suggestions, queued suggestions, observations, best
assignments, importances, stopping criteria.

Every write runs on the store's writer thread and goes through the trial lifecycle
(`paretune.lifecycle.TrialSession`, here `CachedSession`) or `paretune.api`'s management calls,
holding the experiment as a tuning run would: one a flow is tuning is refused with 409.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from paretune import optimizer
from paretune.api import holding
from paretune.failures import Failure
from paretune.lifecycle import CleanMetrics, OpenTrial, clean_metrics
from paretune.server import shapes
from paretune.server.protocol import ApiError, field, id_value, json_body, path_id, query_field
from paretune.server.service import StoreService
from paretune.storage import DuckDBStorage, ExperimentRecord, ObservationRecord, StorageError
from paretune.storage import api_records

T = TypeVar("T")
HOLDER = "paretune serve (SigOpt API)"
REPORTED_FAILURE = "failed: reported through SigOpt's API"
STATES = {"active": ("active", "completed"), "deleted": ("archived",), "all": ("active", "completed", "archived")}


def experiment_of(store: DuckDBStorage, experiment_id: int) -> ExperimentRecord:
    try:
        return store.get_experiment(experiment_id)
    except StorageError:
        raise ApiError(404, f"no experiment {experiment_id} on this server") from None


def answer(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


class Handlers:
    """What every front of the API shares: reads, writes, and the experiment's shape."""

    def __init__(self, service: StoreService):
        self.service = service

    async def read(self, work: Callable[[DuckDBStorage], T]) -> T:
        return await run_in_threadpool(self.service.read, work)

    async def write(self, work: Callable[[DuckDBStorage], T], *, searches: bool = False) -> T:
        return await asyncio.wrap_future(self.service.write(work, searches=searches))

    async def write_experiment(self, experiment_id: int, work: Callable[[DuckDBStorage, ExperimentRecord], T], *,
                               searches: bool = False) -> T:
        """A write to one experiment, holding it as a tuning run does (409 while a flow tunes it);
        `searches`: it runs the optimizer."""
        def held(store: DuckDBStorage) -> T:
            record = experiment_of(store, experiment_id)
            with holding(store, experiment_id, HOLDER):
                return work(store, record)
        return await self.write(held, searches=searches)

    async def fetch_part(self, request: Request, part: str, find: Callable[[DuckDBStorage, int, int], Any],
                         shape: Callable[[ExperimentRecord, Any], dict[str, Any]]) -> Response:
        """One of an experiment's suggestions, queued suggestions or observations: `find(store,
        experiment id, id)` (404 when it is not the experiment's), answered as `shape` has it."""
        experiment_id = path_id(request, "experiment", "experiment")
        part_id = path_id(request, part, {"queued": "queued suggestion"}.get(part, part))
        return answer(await self.read(lambda store: shape(experiment_of(store, experiment_id),
                                                          find(store, experiment_id, part_id))))

    @staticmethod
    def experiment_json(store: DuckDBStorage, record: ExperimentRecord, *, ai: bool = False) -> dict[str, Any]:
        return shapes.experiment_json(record, store.progress(record.id), ai=ai)

    # -- experiments ----------------------------------------------------------------------------------
    async def create_experiment(self, request: Request, *, ai: bool = False) -> Response:
        body = await json_body(request)
        definition = {k: v for k, v in body.items() if k not in ("object", "development", "client", "id")}
        if "project" in request.path_params:
            definition["project"] = request.path_params["project"]
        spec = optimizer.ExperimentSpec.model_validate(definition)

        def create(store: DuckDBStorage) -> dict[str, Any]:
            record = store.create_experiment(spec, allow_duplicate_name=True)
            return self.experiment_json(store, record, ai=ai)
        return answer(await self.write(create))

    async def fetch_experiment(self, request: Request, *, ai: bool = False) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        return answer(await self.read(lambda store: self.experiment_json(store, experiment_of(store, experiment_id),
                                                                          ai=ai)))

    async def list_experiments(self, request: Request, *, ai: bool = False) -> Response:
        state = query_field(request, "state", "string") or "active"
        if state not in STATES:
            raise ApiError(400, f"query parameter `state` must be one of {', '.join(STATES)}, got {state!r}")
        project = request.path_params.get("project")

        def listing(store: DuckDBStorage) -> dict[str, Any]:
            records = [r for r in store.list_experiments()
                       if r.state in STATES[state] and (project is None or r.project == project)]
            return shapes.paginate(records, lambda r: self.experiment_json(store, r, ai=ai), key=lambda r: r.id,
                                   **page(request))
        return answer(await self.read(listing))

    async def update_experiment(self, request: Request, *, ai: bool = False) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        body = await json_body(request)
        changes = experiment_changes(body, ai=ai)
        state = field(body, "state", "string")
        if state not in (None, "active", "deleted"):
            raise ApiError(400, f"field `state` must be active or deleted, got {state!r}")

        def update(store: DuckDBStorage, record: ExperimentRecord) -> dict[str, Any]:
            with store.batch():
                if state is not None:
                    store.set_experiment_state(experiment_id, "archived" if state == "deleted" else "active")
                record = store.update_experiment(experiment_id, **changes)
            return self.experiment_json(store, record, ai=ai)
        return answer(await self.write_experiment(experiment_id, update))

    async def archive_experiment(self, request: Request) -> Response:
        """SigOpt's delete is an archive: no more suggestions, every record kept."""
        experiment_id = path_id(request, "experiment", "experiment")
        await self.write_experiment(experiment_id, lambda store, _: store.set_experiment_state(experiment_id,
                                                                                               "archived"))
        return Response(status_code=204)

    # -- suggestions ----------------------------------------------------------------------------------
    async def create_suggestion(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        body = await json_body(request)
        chosen = field(body, "assignments", "object")
        task = task_name(body)

        def suggest(store: DuckDBStorage, record: ExperimentRecord) -> dict[str, Any]:
            trial = self.open_trial(store, experiment_id, chosen, task)
            return shapes.suggestion_json(record, store.get_suggestion(trial.suggestion_id))
        return answer(await self.write_experiment(experiment_id, suggest, searches=chosen is None))

    def open_trial(self, store: DuckDBStorage, experiment_id: int, chosen: dict[str, Any] | None,
                   task: str | None, *, with_run: bool = False, run_metadata: dict[str, Any] | None = None) -> OpenTrial:
        """The chosen assignments, else the oldest queued suggestion, else the search's next one."""
        session = self.service.session(experiment_id)
        if chosen is None:
            queued = api_records.list_queued(store, experiment_id)
            if queued:
                trial = session.open_at(queued[0].assignments, task=queued[0].task, with_run=with_run,
                                        run_metadata=run_metadata)
                api_records.delete_queued(store, queued[0].id)
                return trial
            return session.ask(1, with_runs=with_run, run_metadata=run_metadata)[0]
        return session.open_at(chosen, task=task, with_run=with_run, run_metadata=run_metadata)

    async def list_suggestions(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        state = query_field(request, "state", "string")
        if state not in (None, "open", "closed", "all"):
            raise ApiError(400, f"query parameter `state` must be open, closed or all, got {state!r}")

        def listing(store: DuckDBStorage) -> dict[str, Any]:
            record = experiment_of(store, experiment_id)
            rows = store.list_suggestions(experiment_id)
            rows = [s for s in rows if state in (None, "all") or (s.state == "open") == (state == "open")]
            return shapes.paginate(rows, lambda s: shapes.suggestion_json(record, s), key=lambda s: s.id,
                                   **page(request))
        return answer(await self.read(listing))

    async def fetch_suggestion(self, request: Request) -> Response:
        return await self.fetch_part(request, "suggestion", suggestion_in, shapes.suggestion_json)

    async def update_suggestion(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        body = await json_body(request)
        if set(body) - {"id", "object", "experiment", "state", "assignments", "created", "task"}:
            raise ApiError(400, "paretune keeps no metadata on suggestions; put it on the observation instead")
        return await self.fetch_suggestion(request)

    async def delete_suggestions(self, request: Request) -> Response:
        """Delete one open suggestion, or (no id) every open one: they are cancelled, never observed."""
        experiment_id = path_id(request, "experiment", "experiment")
        one = path_id(request, "suggestion", "suggestion") if "suggestion" in request.path_params else None

        def cancel(store: DuckDBStorage, record: ExperimentRecord) -> None:
            ids = None
            if one is not None:
                suggestion = suggestion_in(store, experiment_id, one)
                if suggestion.state != "open":
                    raise ApiError(400, f"suggestion {one} is {suggestion.state}: only an open suggestion is deleted")
                ids = [one]
            else:
                ids = [s.id for s in store.list_suggestions(experiment_id, state="open")]
            store.cancel_suggestions(experiment_id, ids, "cancelled: deleted through the API")
        await self.write_experiment(experiment_id, cancel)
        return Response(status_code=204)

    # -- queued suggestions -----------------------------------------------------------------------------
    async def queue_suggestion(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        body = await json_body(request)
        assignments = field(body, "assignments", "object", required=True)
        task = task_name(body)
        return answer(await self.write_experiment(experiment_id, lambda store, record: shapes.queued_json(
            record, api_records.queue_suggestion(store, experiment_id, assignments, task))))

    async def list_queued(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")

        def listing(store: DuckDBStorage) -> dict[str, Any]:
            record = experiment_of(store, experiment_id)
            return shapes.paginate(api_records.list_queued(store, experiment_id),
                                   lambda q: shapes.queued_json(record, q), key=lambda q: q.id, **page(request))
        return answer(await self.read(listing))

    async def fetch_queued(self, request: Request) -> Response:
        return await self.fetch_part(request, "queued", queued_in, shapes.queued_json)

    async def delete_queued(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        queued_id = path_id(request, "queued", "queued suggestion")

        def delete(store: DuckDBStorage, record: ExperimentRecord) -> None:
            queued_in(store, experiment_id, queued_id)
            api_records.delete_queued(store, queued_id)
        await self.write_experiment(experiment_id, delete)
        return Response(status_code=204)

    # -- observations ---------------------------------------------------------------------------------
    async def create_observation(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        body = await json_body(request)

        def observe(store: DuckDBStorage, record: ExperimentRecord) -> dict[str, Any]:
            (observation,) = self.observe(store, record, [body])
            return observation
        return answer(await self.write_experiment(experiment_id, observe))

    async def create_observations(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        items = field(await json_body(request), "observations", "array", required=True)
        if not items or not all(isinstance(item, dict) for item in items):
            raise ApiError(400, "field `observations` must be a non-empty list of observation objects")

        def observe(store: DuckDBStorage, record: ExperimentRecord) -> dict[str, Any]:
            observations = self.observe(store, record, items)
            return {"object": "pagination", "count": len(observations), "data": observations,
                    "paging": {"object": "paging", "before": None, "after": None}}
        return answer(await self.write_experiment(experiment_id, observe))

    def observe(self, store: DuckDBStorage, record: ExperimentRecord, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record observations, every one checked before any is written (so a refused batch writes nothing)."""
        plans = [observation_plan(store, record, item) for item in items]
        ids = [plan[0] for plan in plans if plan[0] is not None]
        if len(ids) != len(set(ids)):
            raise ApiError(400, "the batch observes one suggestion twice; each suggestion is observed once")
        session = self.service.session(record.id)
        recorded = []
        with store.batch():
            for suggestion_id, assignments, task, metrics, metadata in plans:
                if suggestion_id is None:
                    suggestion_id = session.open_at(assignments, task=task).suggestion_id
                if metrics is None:
                    observation = session.fail(suggestion_id, Failure.from_reason(REPORTED_FAILURE),
                                               metadata=metadata)
                else:
                    observation = session.complete(suggestion_id, metrics, metadata=metadata)
                session.cache.add([observation])
                recorded.append(shapes.observation_json(record, observation))
        return recorded

    async def list_observations(self, request: Request) -> Response:
        """Newest first, a page at a time, read from the store a page at a time (SigOpt's `before` paging)."""
        experiment_id = path_id(request, "experiment", "experiment")
        paging = page(request)
        if paging["after"] is not None:
            raise ApiError(400, "page observations with `before` (newest first), not `after`")
        size = min(paging["limit"] or shapes.DEFAULT_PAGE, shapes.MAX_PAGE)

        def listing(store: DuckDBStorage) -> dict[str, Any]:
            record = experiment_of(store, experiment_id)
            rows = store.observation_page(experiment_id, before_id=paging["before"], limit=size + 1)
            (counted,) = store.query("SELECT count(*) AS n FROM observations WHERE experiment_id = ?", [experiment_id])
            more = len(rows) > size
            return {"object": "pagination", "count": counted["n"],
                    "data": [shapes.observation_json(record, o) for o in rows[:size]],
                    "paging": {"object": "paging", "before": str(rows[size - 1].id) if more else None, "after": None}}
        return answer(await self.read(listing))

    async def fetch_observation(self, request: Request) -> Response:
        return await self.fetch_part(request, "observation", observation_in, shapes.observation_json)

    async def update_observation(self, request: Request) -> Response:
        """SigOpt's update: the fields given replace the recorded ones (`values: null` with
        `failed: true` turns a completed observation into a failure); the search sees the change
        at once."""
        experiment_id = path_id(request, "experiment", "experiment")
        observation_id = path_id(request, "observation", "observation")
        body = await json_body(request)

        def revise(store: DuckDBStorage, record: ExperimentRecord) -> dict[str, Any]:
            reported, failure, metadata = observation_change(record, observation_in(store, experiment_id,
                                                                                    observation_id), body)
            session = self.service.session(experiment_id)
            revised = session.revise(observation_id, reported, failure=failure, metadata=metadata)
            session.cache.replace(revised)
            return shapes.observation_json(record, revised)
        return answer(await self.write_experiment(experiment_id, revise))

    async def delete_observations(self, request: Request) -> Response:
        """Delete one observation, or (no id) all of the experiment's. As on SigOpt, the suggestion
        it reported on stays closed (here `cancelled`); the search no longer sees it and the budget
        gets it back."""
        experiment_id = path_id(request, "experiment", "experiment")
        one = path_id(request, "observation", "observation") if "observation" in request.path_params else None

        def delete(store: DuckDBStorage, record: ExperimentRecord) -> None:
            if one is not None:
                observation_in(store, experiment_id, one)
            session = self.service.session(experiment_id)
            session.cache.remove(session.withdraw(None if one is None else [one]))
        await self.write_experiment(experiment_id, delete)
        return Response(status_code=204)


def experiment_changes(body: dict[str, Any], *, ai: bool) -> dict[str, Any]:
    """The changes an experiment update asks for, as `Storage.update_experiment` takes them."""
    allowed = {"name", "metadata", "observation_budget", "budget", "parallel_bandwidth", "metrics", "state",
               "id", "object", "project", "client"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"field `{unknown[0]}` cannot be changed on an existing experiment (name, metadata, "
                            "observation_budget, parallel_bandwidth, metric thresholds and state can)")
    thresholds = None
    if (metrics := field(body, "metrics", "array")) is not None:
        if not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in metrics):
            raise ApiError(400, "field `metrics` must be a list of {name, threshold} objects")
        thresholds = {m["name"]: field(m, "threshold", "number") for m in metrics}
    metadata = field(body, "metadata", "object")
    return {"name": field(body, "name", "string"), "metadata": metadata,
            "budget": field(body, "budget" if ai else "observation_budget", "integer"),
            "parallel_bandwidth": field(body, "parallel_bandwidth", "integer"), "thresholds": thresholds}


def observation_plan(store: DuckDBStorage, record: ExperimentRecord, body: dict[str, Any]) -> tuple[
        int | None, dict[str, Any] | None, str | None, CleanMetrics | None, dict[str, Any] | None]:
    """Check one observation request: (suggestion id or None, assignments, task, metrics or None
    when failed, metadata). Raises ApiError; writes nothing."""
    failed = field(body, "failed", "boolean", default=False)
    metadata = field(body, "metadata", "object")
    suggestion = body.get("suggestion")
    assignments = field(body, "assignments", "object")
    if (suggestion is None) == (assignments is None):
        raise ApiError(400, "give either `suggestion` (the id it observes) or `assignments`, not both or neither")
    suggestion_id = None
    if suggestion is not None:
        suggestion_id = id_value(suggestion, "suggestion")
        found = suggestion_in(store, record.id, suggestion_id, status=400)
        if found.state != "open":
            raise ApiError(400, f"suggestion {suggestion_id} is {found.state}, not open: it was already observed "
                                "or deleted")
    values = reported_values(record, body)
    if failed:
        if values:
            raise ApiError(400, "a failed observation carries no values; give `values` or `failed: true`")
        return suggestion_id, assignments, task_name(body), None, metadata
    if not values:
        raise ApiError(400, "missing `values` (a list of {name, value, value_stddev}); or `failed: true`")
    return suggestion_id, assignments, task_name(body), clean_metrics(record.spec, values, keep_undeclared=False), \
        metadata


def reported_values(record: ExperimentRecord, body: dict[str, Any]) -> list[dict[str, Any]] | None:
    values = field(body, "values", "array")
    value = field(body, "value", "number")
    if value is not None:
        if values is not None or len(record.spec.optimized_metrics) != 1:
            raise ApiError(400, "`value` is for a single-metric experiment; give `values` as a list of {name, value}")
        return [{"name": record.spec.optimized_metrics[0].name, "value": value,
                 "value_stddev": field(body, "value_stddev", "number")}]
    for item in values or ():
        if not isinstance(item, dict):
            raise ApiError(400, "each of `values` must be an object {name, value, value_stddev}")
        field(item, "name", "string", required=True)
        field(item, "value", "number", required=True)
        field(item, "value_stddev", "number")
    return values


FIXED_OBSERVATION_FIELDS = ("suggestion", "assignments", "task")
OBSERVATION_UPDATE_FIELDS = {"values", "value", "value_stddev", "failed", "metadata", "no_optimize", "id", "object",
                             "experiment", "created", *FIXED_OBSERVATION_FIELDS}


def observation_change(record: ExperimentRecord, current: ObservationRecord, body: dict[str, Any]) -> tuple[
        list[dict[str, Any]] | None, Failure | None, dict[str, Any] | None]:
    """An update merged with the observation as recorded (SigOpt's rule: the fields given replace
    the recorded ones): (the values to record, or None and the failure; the new metadata, or None
    to keep it). Raises ApiError; writes nothing."""
    unknown = sorted(set(body) - OBSERVATION_UPDATE_FIELDS)
    if unknown:
        raise ApiError(400, f"field `{unknown[0]}` cannot be changed on an observation (values, value, value_stddev, "
                            "failed and metadata can)")
    recorded = {"suggestion": current.suggestion_id, "assignments": current.assignments, "task": current.task}
    given = {"suggestion": lambda: id_value(body["suggestion"], "suggestion"),
             "assignments": lambda: field(body, "assignments", "object"), "task": lambda: task_name(body)}
    for name in FIXED_OBSERVATION_FIELDS:
        if body.get(name) is not None and given[name]() != recorded[name]:
            raise ApiError(400, f"field `{name}`: an observation keeps the suggestion, assignments and task it was "
                                "recorded with; delete it and create a new observation instead")
    field(body, "no_optimize", "boolean")  # SigOpt's: paretune's search always sees the change at once
    failed = field(body, "failed", "boolean", default=current.failed)
    if "values" in body or "value" in body:
        reported = reported_values(record, body)
    else:
        reported = None if current.failed else shapes.values_json(current.values, current.value_stddevs)
    if failed and reported:
        fix = "send `failed: false` with them" if "failed" not in body else "send `values: null` with `failed: true`"
        raise ApiError(400, f"a failed observation carries no values: {fix}")
    if not failed and not reported:
        raise ApiError(400, "missing `values` (a list of {name, value, value_stddev}): a completed observation "
                            "carries its values; or `failed: true`")
    failure = None
    if failed:
        failure = Failure.from_reason(current.failure_reason if current.failed else REPORTED_FAILURE)
    metadata = (field(body, "metadata", "object") or {}) if "metadata" in body else None
    return reported, failure, metadata


def observation_in(store: DuckDBStorage, experiment_id: int, observation_id: int) -> ObservationRecord:
    experiment_of(store, experiment_id)
    found = store.observation_page(experiment_id, before_id=observation_id + 1, limit=1)
    if not found or found[0].id != observation_id:
        raise ApiError(404, f"no observation {observation_id} in experiment {experiment_id}")
    return found[0]


def task_name(body: dict[str, Any]) -> str | None:
    task = body.get("task")
    if isinstance(task, dict):
        return field(task, "name", "string")
    return field(body, "task", "string")


def suggestion_in(store: DuckDBStorage, experiment_id: int, suggestion_id: int, status: int = 404) -> Any:
    try:
        suggestion = store.get_suggestion(suggestion_id)
    except StorageError:
        suggestion = None
    if suggestion is None or suggestion.experiment_id != experiment_id:
        raise ApiError(status, f"no suggestion {suggestion_id} in experiment {experiment_id}")
    return suggestion


def queued_in(store: DuckDBStorage, experiment_id: int, queued_id: int) -> Any:
    try:
        queued = api_records.get_queued(store, queued_id)
    except StorageError:
        queued = None
    if queued is None or queued.experiment_id != experiment_id:
        raise ApiError(404, f"no queued suggestion {queued_id} in experiment {experiment_id}")
    return queued


def page(request: Request) -> dict[str, Any]:
    limit = query_field(request, "limit", "integer")
    if limit is not None and limit < 1:
        raise ApiError(400, "query parameter `limit` must be >= 1")
    return {"limit": limit, "before": query_field(request, "before", "integer"),
            "after": query_field(request, "after", "integer")}

"""SigOpt's runs API (projects, training runs, checkpoints, AI experiments' runs) and its reports
(best assignments, best runs, importances, stopping criteria, the token's own record).

A run of an experiment is a trial: created through `TrialSession` with its suggestion, and closed
through it when the client sets its state, so its logged metrics become the observation in one
transaction. A run outside any experiment (a baseline) is a plain stored run.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from paretune import optimizer
from paretune.environment import capture_environment
from paretune.failures import Failure
from paretune.importance import metric_importances
from paretune.lifecycle import OpenTrial
from paretune.server import shapes
from paretune.api import holding
from paretune.server.core import HOLDER, REPORTED_FAILURE, Handlers, answer, experiment_of, page
from paretune.server.protocol import ApiError, field, json_body, path_id, query_field
from paretune.storage import DuckDBStorage, ExperimentRecord, ObservationRecord, RunRecord, StorageError
from paretune.storage import api_records
from paretune.storage.report import frontier_points

PROJECT_ID = re.compile(r"[a-z0-9\-_.]{1,100}\Z")
# Run fields kept in the run's metadata: merged key by key, or (the rest) replaced whole.
MERGED_RUN_FIELDS = ("metadata", "datasets", "sys_metadata", "dev_metadata", "assignments_meta", "assignments_sources")
REPLACED_RUN_FIELDS = ("model", "logs", "source_code")


def stop_answer(answer: Any) -> tuple[bool, dict[str, bool]]:
    """SigOpt's `should_stop` and `stopping_reasons` from the lifecycle's answer to a checkpoint.

    The one place the early-stopping decision enters the API. `TrialSession.checkpoint` answers
    None where no stopping rule exists (the run goes on), or a decision with `should_stop` and
    `reasons`; a run outside any experiment is never stopped.
    """
    if answer is None:
        return False, {}
    reasons = getattr(answer, "reasons", None) or {}
    if not isinstance(reasons, dict):
        reasons = {str(reason): True for reason in reasons}
    return bool(answer.should_stop), reasons


class Api(Handlers):
    """The whole of SigOpt's API: the core handlers and these."""

    # -- clients, projects, tokens ----------------------------------------------------------------------
    async def token_self(self, request: Request) -> Response:
        token = request.scope["paretune.token"]
        return answer({"object": "token", "token": None, "client": shapes.CLIENT_ID, "user": shapes.USER_ID,
                       "token_type": "client-api", "all_experiments": True, "development": False, "experiment": None,
                       "expires": None, "permissions": "read" if token.read_only else "write", "name": token.name})

    async def fetch_client(self, request: Request) -> Response:
        return answer({"object": "client", "id": shapes.CLIENT_ID, "name": "paretune", "organization": "1",
                       "created": None})

    async def create_project(self, request: Request) -> Response:
        body = await json_body(request)
        project_id = field(body, "id", "string", required=True)
        if not PROJECT_ID.match(project_id):
            raise ApiError(400, f"project id {project_id!r}: use lowercase letters, digits, -, _ and . only")
        name = field(body, "name", "string") or project_id
        metadata = field(body, "metadata", "object")

        def create(store: DuckDBStorage) -> dict[str, Any]:
            if api_records.get_project(store, project_id) is not None or self._baseline_runs(store, project_id):
                raise ApiError(409, f"project {project_id!r} already exists")
            api_records.create_project(store, project_id, name, metadata)
            return project_json(api_records.get_project(store, project_id))
        return answer(await self.write(create))

    async def fetch_project(self, request: Request) -> Response:
        project_id = request.path_params["project"]
        if not PROJECT_ID.match(project_id):
            raise ApiError(404, f"no project {project_id[:100]!r}")
        found = await self.read(lambda store: api_records.get_project(store, project_id))
        # A project is a name: one nobody created yet is created by its first run or experiment.
        return answer(project_json(found or {"id": project_id, "name": project_id, "metadata": {}}))

    async def list_projects(self, request: Request) -> Response:
        projects = await self.read(api_records.list_projects)
        return answer(shapes.paginate(projects, project_json, key=lambda p: -projects.index(p), **page(request)))

    # -- runs -------------------------------------------------------------------------------------------
    async def create_baseline_run(self, request: Request) -> Response:
        project = request.path_params["project"]
        body = await json_body(request)
        name = field(body, "name", "string") or f"{project} run"
        metadata = field(body, "metadata", "object") or {}

        def create(store: DuckDBStorage) -> dict[str, Any]:
            where = capture_environment()
            run = store.create_run(name, metadata=where.metadata() | {"metadata": metadata, "project": project},
                                   git_commit=where.git_commit, host=where.host, device=where.device)
            return shapes.run_json(run, project=project)
        return answer(await self.write(create))

    async def create_experiment_run(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        body = await json_body(request)
        metadata = field(body, "metadata", "object") or {}

        def create(store: DuckDBStorage, record: ExperimentRecord) -> dict[str, Any]:
            trial = self.open_trial(store, experiment_id, None, None, with_run=True,
                                    run_metadata={"metadata": metadata})
            return self.run_json(store, store.get_run(trial.run_id))
        return answer(await self.write_experiment(experiment_id, create, searches=True))

    async def fetch_run(self, request: Request) -> Response:
        run_id = path_id(request, "run", "training run")
        return answer(await self.read(lambda store: self.run_json(store, run_of(store, run_id))))

    async def list_project_runs(self, request: Request) -> Response:
        project = request.path_params["project"]
        experiment = run_filters(query_field(request, "filters", "json"))

        def listing(store: DuckDBStorage) -> dict[str, Any]:
            if experiment is not None:
                runs = store.list_runs(experiment) if experiment_of(store, experiment).project == project else []
            else:
                ids = {r.id for r in store.list_experiments() if r.project == project}
                runs = [r for r in store.list_runs() if r.experiment_id in ids] + self._baseline_runs(store, project)
            return shapes.paginate(runs, lambda r: self.run_json(store, r), key=lambda r: r.id, **page(request))
        return answer(await self.read(listing))

    async def update_run(self, request: Request) -> Response:
        """SigOpt's run updates (MERGE or PUT): logged values, metadata, parameters, and the end state,
        which closes an experiment's trial."""
        run_id = path_id(request, "run", "training run")
        body = await json_body(request)
        changes = run_changes(body)

        def update(store: DuckDBStorage) -> dict[str, Any]:
            run = run_of(store, run_id)
            if run.experiment_id is None:
                self.apply_run_changes(store, run, changes)
            else:
                self.write_held(store, run.experiment_id, lambda: self.apply_run_changes(store, run, changes))
            return self.run_json(store, store.get_run(run_id))
        result = await self.write(update)
        return Response(status_code=204) if request.headers.get("x-response-content") == "skip" else answer(result)

    def apply_run_changes(self, store: DuckDBStorage, run: RunRecord, changes: dict[str, Any]) -> None:
        state = changes.pop("state", None)
        with store.batch():
            if run.status != "running" and (changes or state not in (None, {"running": "active"}.get(run.status,
                                                                                                        run.status))):
                raise ApiError(400, f"run {run.id} is {run.status}; a finished run cannot be changed")
            values = changes.pop("values", None)
            assignments = changes.pop("assignments", None)
            if assignments:
                fixed = {k for k, v in assignments.items() if k in run.parameters and run.suggestion_id is not None
                         and run.parameters[k] != v}
                if fixed:
                    raise ApiError(400, f"parameter {sorted(fixed)[0]} is the suggestion's; it cannot be changed")
                store.log_run_parameters(run.id, assignments)
            metadata = {key: (run.metadata.get(key) or {}) | value if key in MERGED_RUN_FIELDS else value
                        for key, value in changes.items()}
            if values:
                store.log_run_metrics(run.id, {name: v["value"] for name, v in values.items()})
                stddevs = {name: v["value_stddev"] for name, v in values.items() if v.get("value_stddev") is not None}
                if stddevs:
                    metadata["value_stddevs"] = (run.metadata.get("value_stddevs") or {}) | stddevs
            if metadata:
                store.log_run_metadata(run.id, metadata)
            if state in ("completed", "failed"):
                self.end_run(store, store.get_run(run.id), state)

    def end_run(self, store: DuckDBStorage, run: RunRecord, state: str) -> None:
        if run.suggestion_id is None:
            store.finish_run(run.id, state, None if state == "completed" else REPORTED_FAILURE)
            return
        session = self.service.session(run.experiment_id)
        trial = OpenTrial(run.suggestion_id, run.parameters, run.id)
        if state == "failed":
            observation = session.fail(trial, Failure.from_reason(REPORTED_FAILURE))
        else:
            stddevs = run.metadata.get("value_stddevs") or {}
            reported = {name: {"value": value, "value_stddev": stddevs.get(name)} for name, value in run.metrics.items()}
            observation = session.complete(trial, reported or {})
        session.cache.add([observation])

    async def create_checkpoint(self, request: Request) -> Response:
        run_id = path_id(request, "run", "training run")
        values = field(await json_body(request), "values", "array", required=True)
        if not values or not all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in values):
            raise ApiError(400, "field `values` must be a non-empty list of {name, value}")
        numbers = {v["name"]: field(v, "value", "number", required=True) for v in values}

        def checkpoint(store: DuckDBStorage) -> dict[str, Any]:
            run = run_of(store, run_id)
            if run.status != "running":
                raise ApiError(400, f"run {run_id} is {run.status}: checkpoints go to a running run")
            epoch = len(store.checkpoints(run_id))
            answer = None
            if run.suggestion_id is None:
                store.add_checkpoint(run_id, epoch, numbers)
            else:
                trial = OpenTrial(run.suggestion_id, run.parameters, run.id)
                answer = self.write_held(store, run.experiment_id, lambda: self.service.session(
                    run.experiment_id).checkpoint(trial, epoch, numbers))
            stop, reasons = stop_answer(answer)
            return shapes.checkpoint_json(run_id, epoch, numbers, stop, reasons)
        return answer(await self.write(checkpoint))

    async def list_checkpoints(self, request: Request) -> Response:
        run_id = path_id(request, "run", "training run")

        def listing(store: DuckDBStorage) -> dict[str, Any]:
            return shapes.paginate(answered_checkpoints(store, run_of(store, run_id)), lambda pair: pair[1],
                                   key=lambda pair: pair[0], **page(request))
        return answer(await self.read(listing))

    async def fetch_checkpoint(self, request: Request) -> Response:
        run_id = path_id(request, "run", "training run")
        wanted = request.path_params["checkpoint"]

        def fetch(store: DuckDBStorage) -> dict[str, Any]:
            found = [c for _, c in answered_checkpoints(store, run_of(store, run_id)) if c["id"] == wanted]
            if not found:
                raise ApiError(404, f"no checkpoint {wanted} in training run {run_id}")
            return found[0]
        return answer(await self.read(fetch))

    def run_json(self, store: DuckDBStorage, run: RunRecord) -> dict[str, Any]:
        observed = store.query("SELECT id FROM observations WHERE run_id = ?", [run.id])
        project = run.metadata.get("project")
        if run.experiment_id is not None:
            project = store.get_experiment(run.experiment_id).project
        return shapes.run_json(run, observation=observed[0]["id"] if observed else None,
                               checkpoints=len(store.checkpoints(run.id)), project=project)

    @staticmethod
    def _baseline_runs(store: DuckDBStorage, project: str) -> list[RunRecord]:
        ids = store.query("SELECT id FROM runs WHERE experiment_id IS NULL AND "
                          "json_extract_string(metadata, '$.project') = ?", [project])
        return [store.get_run(row["id"]) for row in ids]

    @staticmethod
    def write_held(store: DuckDBStorage, experiment_id: int, work: Any) -> Any:
        """`work()` holding the experiment as a tuning run does (409 while a flow tunes it)."""
        with holding(store, experiment_id, HOLDER):
            return work()

    # -- reports ----------------------------------------------------------------------------------------
    async def best_assignments(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")

        def best(store: DuckDBStorage) -> dict[str, Any]:
            record = experiment_of(store, experiment_id)
            return shapes.paginate(best_observations(store, record), best_json, key=lambda o: o.id, **page(request))
        return answer(await self.read(best))

    async def best_runs(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")

        def best(store: DuckDBStorage) -> dict[str, Any]:
            chosen = best_observations(store, experiment_of(store, experiment_id))
            runs = [store.get_run(o.run_id) for o in chosen if o.run_id is not None]
            return shapes.paginate(runs, lambda r: self.run_json(store, r), key=lambda r: r.id, **page(request))
        return answer(await self.read(best))

    async def importances(self, request: Request, *, per_metric: bool) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")
        record, observations = await self.read(lambda store: (experiment_of(store, experiment_id),
                                                              store.observations(experiment_id)))

        def compute() -> Any:  # the forests run outside the store's lock
            names = [p.name for p in record.spec.parameters]
            results = metric_importances(
                record.spec, {n: [o.assignments.get(n) for o in observations] for n in names},
                {m.name: [None if o.failed else (o.values or {}).get(m.name) for o in observations]
                 for m in record.spec.optimized_metrics})
            missing = next((r for r in results if r.importances is None), None)
            if missing is not None:
                raise ApiError(400, f"importances for {missing.metric} cannot be computed yet: {missing.reason}")
            if not per_metric:
                return {"object": "importances", "importances": results[0].importances}
            return shapes.paginate(results, lambda r: {"object": "metric_importances", "metric": r.metric,
                                                       "importances": r.importances},
                                   key=lambda r: -results.index(r), **page(request))
        return answer(await run_in_threadpool(compute))

    async def stopping_criteria(self, request: Request) -> Response:
        experiment_id = path_id(request, "experiment", "experiment")

        def criteria(store: DuckDBStorage) -> dict[str, Any]:
            record = experiment_of(store, experiment_id)
            done = store.progress(experiment_id).done
            reasons = ["observation_budget_reached"] if done else []
            reasons += ["experiment_archived"] if record.state == "archived" else []
            return {"object": "stopping_criteria", "should_stop": bool(reasons), "reasons": reasons}
        return answer(await self.read(criteria))


def best_observations(store: DuckDBStorage, record: ExperimentRecord) -> list[ObservationRecord]:
    """SigOpt's best assignments: the Pareto set meeting every threshold (two optimized metrics),
    else the best `num_solutions` observations."""
    observations = store.observations(record.id)
    if len(record.spec.optimized_metrics) > 1:
        on_frontier = {point.observation_id for point in frontier_points(store, record.id)[1]}
        return [o for o in observations if o.id in on_frontier]
    history = store.history(record.id)
    chosen = {id(o) for o in optimizer.best_solutions(record.spec, history)}
    return [record_ for record_, observation in zip(observations, history) if id(observation) in chosen]


def best_json(observation: ObservationRecord) -> dict[str, Any]:
    values = shapes.values_json(observation.values, observation.value_stddevs)
    single = values[0] if len(values) == 1 else {}
    return {"object": "best_assignments", "id": str(observation.id), "assignments": observation.assignments,
            "values": values, "value": single.get("value"), "value_stddev": single.get("value_stddev")}


def project_json(project: dict[str, Any]) -> dict[str, Any]:
    return {"object": "project", "id": project["id"], "name": project["name"], "client": shapes.CLIENT_ID,
            "user": shapes.USER_ID, "metadata": project.get("metadata") or None,
            "created": shapes.seconds(project.get("created_at")), "updated": None}


def answered_checkpoints(store: DuckDBStorage, run: RunRecord) -> list[tuple[int, dict[str, Any]]]:
    """A run's checkpoints as (epoch, SigOpt's checkpoint object), each with the answer it was given when
    it was created (kept by the lifecycle by checkpoint number; a run outside any experiment, or
    one without a training monitor, was never told to stop)."""
    decisions = store.stop_decisions(run.suggestion_id) if run.suggestion_id is not None else {}
    return [(checkpoint["epoch"], shapes.checkpoint_json(run.id, checkpoint["epoch"], checkpoint["values"],
                                                         *decisions.get(number, (False, {}))))
            for number, checkpoint in enumerate(store.checkpoints(run.id), start=1)]


def run_of(store: DuckDBStorage, run_id: int) -> RunRecord:
    try:
        return store.get_run(run_id)
    except StorageError:
        raise ApiError(404, f"no training run {run_id} on this server") from None


def run_filters(filters: Any) -> int | None:
    """The experiment a run listing is filtered to (SigOpt's `[{field, operator, value}]`), if any."""
    if filters is None:
        return None
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise ApiError(400, "query parameter `filters` must be a JSON list of {field, operator, value}")
    experiment = None
    for item in filters:
        if item.get("field") != "experiment" or item.get("operator") != "==":
            raise ApiError(400, f"filter {item!r:.100}: this server filters runs by experiment (==) only")
        value = item.get("value")
        if not (isinstance(value, str) and value.isdigit()) and not (isinstance(value, int) and value >= 0):
            raise ApiError(400, "filter on experiment: the value is an experiment id")
        experiment = int(value)
    return experiment


def run_changes(body: dict[str, Any]) -> dict[str, Any]:
    """Check a run update's fields; what to change, by SigOpt's names."""
    known = {"values", "state", "assignments", "name", "deleted", *MERGED_RUN_FIELDS, *REPLACED_RUN_FIELDS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(400, f"field `{unknown[0]}` is not a training run field this server records")
    changes: dict[str, Any] = {}
    state = field(body, "state", "string")
    if state not in (None, "active", "completed", "failed"):
        raise ApiError(400, f"field `state` must be active, completed or failed, got {state!r}")
    if state is not None:
        changes["state"] = state
    values = field(body, "values", "object")
    for name, value in (values or {}).items():
        if not isinstance(value, dict):
            raise ApiError(400, f"values.{name} must be an object {{value, value_stddev}}")
        field(value, "value", "number", required=True)
        field(value, "value_stddev", "number")
    if values:
        changes["values"] = values
    if (assignments := field(body, "assignments", "object")) is not None:
        changes["assignments"] = assignments
    for key in (*MERGED_RUN_FIELDS, *REPLACED_RUN_FIELDS):
        if (value := field(body, key, "object")) is not None:
            changes[key] = value
    return changes

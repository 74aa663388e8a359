"""HTTP triggers: submit jobs; list and inspect runs, their logs and metrics; cancel; jobs, models, clusters,
dead letters; teams and cost; health.

Every route parameter, query value and header is checked against its shape before any storage call,
and every error is an RFC 9457 problem (`functions/problems.py`). Routes are declared with `_route`,
which also records them for the OpenAPI document (`GET /api/openapi.json`). Contract: docs/api.md.
It runs past 300 lines because each route's OpenAPI declaration sits above its handler, one route per block.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from aztrain.api import models as api
from aztrain.api import teams as teams_api
from aztrain.domain.errors import InvalidTransition
from aztrain.domain.runs import RunState
from aztrain.domain.teams import TEAM_PATTERN, Team
from aztrain.service.bootstrap import control_plane
from aztrain.service.queries import Queries
from functions import submission
from functions.identity import Access, caller
from functions.openapi import Body, Header, Operation, PathParameter, document
from functions.problems import ApiProblem, Handler, bad_request, guarded, invalid

bp = func.Blueprint()
log = logging.getLogger(__name__)

#: Every route this blueprint serves, as the OpenAPI document describes it.
OPERATIONS: list[Operation] = []

RUN_ID = PathParameter(
    api.RUN_REF_PATTERN, "a run id, its short id (6 hex digits), or a unique prefix of the id (at least 6 characters)"
)
NAME = PathParameter(api.NAME_PATTERN, "a job (and model) name: 3-63 lowercase letters, digits or '-'")
VERSION = PathParameter(r"^[1-9][0-9]{0,8}$", "a version number, from 1")
_BYTES = r"^[0-9]+$"
LOG_HEADERS = (
    Header("X-Log-Offset", "Byte offset of the first byte returned", _BYTES),
    Header("X-Log-Next-Offset", "Where to continue (`?offset=`) to follow the log", _BYTES),
    Header("X-Log-Size", "The log's size when read", _BYTES),
    Header(
        "X-Run-State",
        "The run's state when read: follow until it is terminal and nothing new arrives",
        enum=tuple(state.value for state in RunState),
    ),
)

Q = TypeVar("Q", bound=BaseModel)


def _route(
    method: str,
    route: str,
    summary: str,
    responses: dict[int, Body],
    *,
    access: Access = Access.SIGNED_IN,
    **details: Any,
) -> Callable[[Handler], Any]:
    """Register a route with the blueprint, inside the problem guard, and record it for the OpenAPI document.

    `access`: what the caller needs; any but PUBLIC answers 401 to a caller who is not signed in.
    """
    errors = tuple(details.pop("errors", ()))
    if access is not Access.PUBLIC:
        errors = (*errors, 401) + ((403,) if access in (Access.SUBMIT, Access.ADMIN) else ())

    def register(handler: Handler) -> Any:
        OPERATIONS.append(
            Operation(
                method=method,
                route=route,
                name=handler.__name__,
                summary=summary,
                responses=responses,
                errors=tuple(sorted(errors)),
                access=access.value,
                **details,
            )
        )
        checked = handler if access is Access.PUBLIC else _signed_in(handler)
        return bp.route(route=route, methods=[method])(guarded(checked))

    return register


def _signed_in(handler: Handler) -> Handler:
    """`handler`, answering 401 before it runs unless the caller is signed in."""

    @functools.wraps(handler)
    def route(req: func.HttpRequest) -> func.HttpResponse:
        caller(req)
        return handler(req)

    return route


def _run_route(
    method: str, suffix: str, summary: str, responses: dict[int, Body], **details: Any
) -> Callable[[Handler], Any]:
    """A route of one run (`runs/{run_id}<suffix>`): 400 malformed id, 404 no such run, 409 ambiguous prefix."""
    return _route(
        method, "runs/{run_id}" + suffix, summary, responses, errors=(400, 404, 409), path={"run_id": RUN_ID}, **details
    )


def _json(body: BaseModel, status: int = 200) -> func.HttpResponse:
    return submission.Answer(status=status, body=body.model_dump(mode="json", by_alias=True)).response()


def _queries() -> Queries:
    return control_plane().queries


def _query(model: type[Q], req: func.HttpRequest) -> Q:
    """The query as `model`, each value checked as the document says (an empty one too)."""
    try:
        return model.model_validate(dict(req.params))
    except ValidationError as exc:
        raise bad_request(exc) from None


def _param(req: func.HttpRequest, name: str, shape: PathParameter) -> str:
    """A route parameter that has its shape; a 400 naming the shape otherwise (the value is not echoed)."""
    value = str(req.route_params.get(name, ""))
    if not re.fullmatch(shape.pattern, value):
        raise invalid(name, f"must be {shape.description}")
    return value


def _run_ref(req: func.HttpRequest) -> str:
    """The run id (or prefix) the route names: a 400 when malformed."""
    return _param(req, "run_id", RUN_ID)


# --------------------------------------------------------------------------------------------- jobs


@_route(
    "POST",
    "jobs",
    "Submit a manifest (JSON or YAML); starts a run, returns the run of an identical manifest, "
    "or registers a watching job that waits for its data; with ?dry_run=true, what it would do (200 DryRunView)",
    {202: api.Submitted, 200: (api.Submitted, teams_api.DryRunView)},
    errors=(400, 413, 415, 422),
    access=Access.SUBMIT,
    query=api.SubmitQuery,
    manifest_body=True,
    request_headers=(submission.IDEMPOTENCY_KEY, submission.REQUEST_ID),
    response_headers={202: (submission.LOCATION, submission.REPLAYED), 200: (submission.REPLAYED,)},
)
def submit_job(req: func.HttpRequest) -> func.HttpResponse:
    """202 with a new run (or `waiting`), 200 with an existing one; 422 (with the REJECTED run) if invalid.

    `?dry_run=true`: 200 with what would happen; nothing is recorded (an invalid manifest is a 422 without a run).
    """
    query = _query(api.SubmitQuery, req)
    if query.dry_run:
        return _json(submission.dry_run(req, control_plane(), by=caller(req)))
    return submission.submit(req, control_plane(), force=query.force, by=caller(req))


@_route(
    "GET",
    "jobs",
    "Jobs (their latest accepted manifests), by name",
    {200: api.JobList},
    errors=(400,),
    query=api.PageQuery,
)
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(api.PageQuery, req)
    return _json(_queries().jobs(limit=query.limit, continuation=query.continuation))


@_route(
    "GET",
    "jobs/{name}/window",
    "A watched job's pending retraining window: arrivals so far, when it fires, or why it does not",
    {200: api.WindowView},
    errors=(400, 404),
    path={"name": NAME},
)
def job_window(req: func.HttpRequest) -> func.HttpResponse:
    return _json(_queries().window(_param(req, "name", NAME)))


# ------------------------------------------------------------------------------------------- models


@_route(
    "GET",
    "models",
    "Every registered model version, by model and version",
    {200: api.ModelList},
    errors=(400,),
    query=api.PageQuery,
)
def list_models(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(api.PageQuery, req)
    return _json(_queries().models(limit=query.limit, continuation=query.continuation))


@_route(
    "GET",
    "models/{name}",
    "A model's versions and its current (latest promoted) version",
    {200: api.ModelVersions},
    errors=(400, 404),
    path={"name": NAME},
)
def model_versions(req: func.HttpRequest) -> func.HttpResponse:
    return _json(_queries().model(_param(req, "name", NAME)))


@_route(
    "GET",
    "models/{name}/versions/{version}",
    "Lineage of one version: model → run → snapshot → blobs",
    {200: api.Lineage},
    errors=(400, 404),
    path={"name": NAME, "version": VERSION},
)
def model_lineage(req: func.HttpRequest) -> func.HttpResponse:
    name, version = _param(req, "name", NAME), int(_param(req, "version", VERSION))
    return _json(_queries().lineage(name, version))


# --------------------------------------------------------------------------------------------- runs


@_route("GET", "runs", "Runs, newest first, a page at a time", {200: api.RunList}, errors=(400,), query=api.RunsQuery)
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(api.RunsQuery, req)
    return _json(_queries().runs(job=query.job, states=query.state, limit=query.limit, continuation=query.continuation))


@_run_route(
    "GET",
    "",
    "A run with its history (refused transitions only with ?all=true), by id or unique id prefix",
    {200: api.RunDetail},
    query=api.RunQuery,
)
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    shown = _query(api.RunQuery, req)
    return _json(_queries().detail(_run_ref(req), refused=shown.all))


@_run_route(
    "POST",
    "/cancel",
    "Ask a run to stop (idempotent while it stops)",
    {202: api.RunView},
    access=Access.SUBMIT,
)
def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    service = control_plane()
    run = service.queries.run(_run_ref(req))
    try:
        canceled = service.cancel(run.id, cause="http:cancel", by=caller(req))
    except InvalidTransition as exc:
        raise ApiProblem(409, "run-finished", str(exc), state=RunState(exc.state)) from None
    return _json(service.queries.view(canceled), 202)


@_run_route(
    "GET",
    "/logs",
    "The run's log from a byte offset (follow it with X-Log-Next-Offset), or its last lines",
    {200: "text/plain"},
    query=api.LogsQuery,
    response_headers={200: LOG_HEADERS},
)
def run_logs(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(api.LogsQuery, req)
    log_ = _queries().log(_run_ref(req), offset=query.offset or 0, tail=query.tail)
    chunk = log_.chunk
    headers = dict(
        zip(
            (h.name for h in LOG_HEADERS),
            (str(chunk.offset), str(chunk.next_offset), str(chunk.size), log_.state.value),
            strict=True,
        )
    )
    return func.HttpResponse(chunk.data, status_code=200, mimetype="text/plain", charset="utf-8", headers=headers)


@_run_route(
    "GET",
    "/metrics",
    "Per-epoch metrics (live while the run trains) and the final figures",
    {200: api.Metrics},
)
def run_metrics(req: func.HttpRequest) -> func.HttpResponse:
    return _json(_queries().metrics(_run_ref(req)))


# ------------------------------------------------------------------------------------ cost, teams


@_route(
    "GET",
    "cost",
    "A month's spend per team, per job and per day: finished runs' final cost and active runs' live cost",
    {200: teams_api.CostReport},
    errors=(400,),
    query=teams_api.CostQuery,
)
def cost(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(teams_api.CostQuery, req)
    return _json(_queries().cost(query.month, team=query.team))


TEAM = PathParameter(TEAM_PATTERN, "a team's name: 3-32 lowercase letters, digits or '-', starting with a letter")


@_route(
    "GET", "teams", "Every team and its bounds (GPUs, GPU-hours, budget, priorities, weight)", {200: teams_api.TeamList}
)
def list_teams(req: func.HttpRequest) -> func.HttpResponse:
    return _json(teams_api.TeamList(teams=[_team_view(t) for t in control_plane().teams()]))


@_route(
    "PUT",
    "teams/{team}",
    "Create a team or replace its bounds (a bound left out or null does not bound)",
    {200: teams_api.TeamView},
    errors=(400,),
    access=Access.ADMIN,
    path={"team": TEAM},
    json_body=teams_api.TeamBounds,
)
def put_team(req: func.HttpRequest) -> func.HttpResponse:
    name = _param(req, "team", TEAM)
    if not req.get_body():  # the document says the body is required: `{}` sets no bound, nothing is a 400
        raise invalid("body", "send the team's bounds as a JSON object; {} sets none")
    try:
        # Strict, as the document types it: `false` is not a number, `"2"` not an integer.
        bounds = teams_api.TeamBounds.model_validate_json(req.get_body(), strict=True)
    except ValidationError as exc:
        raise bad_request(exc) from None
    team = control_plane().set_team(Team(name=name, **bounds.model_dump()), by=caller(req))
    return _json(_team_view(team))


@_route(
    "DELETE",
    "teams/{team}",
    "Forget a team's bounds (its runs keep their team)",
    {200: teams_api.TeamList},
    errors=(400,),
    access=Access.ADMIN,
    path={"team": TEAM},
)
def delete_team(req: func.HttpRequest) -> func.HttpResponse:
    service = control_plane()
    service.delete_team(_param(req, "team", TEAM), by=caller(req))
    return _json(teams_api.TeamList(teams=[_team_view(t) for t in service.teams()]))


def _team_view(team: Team) -> teams_api.TeamView:
    fields = {name: getattr(team, name) for name in teams_api.TeamBounds.model_fields}
    return teams_api.TeamView(name=team.name, **fields)


# ---------------------------------------------------------------------------------------- the rest


@_route(
    "GET", "clusters", "Clusters: desired vs observed nodes, active runs, last scale action", {200: api.ClusterList}
)
def list_clusters(req: func.HttpRequest) -> func.HttpResponse:
    return _json(_queries().clusters())


@_route(
    "GET",
    "deadletters",
    "Events a handler could never act on, oldest first, each with the reason (they were acknowledged)",
    {200: api.DeadLetterList},
    errors=(400,),
    query=api.PageQuery,
)
def list_dead_letters(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(api.PageQuery, req)
    return _json(_queries().dead_letters(limit=query.limit, continuation=query.continuation))


@_route("GET", "health", "Liveness plus a storage round trip", {200: api.Health, 503: api.Health}, access=Access.PUBLIC)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """A misconfigured app says so at once."""
    health = _queries().health()
    return _json(health, 200 if health.status == "ok" else 503)


@_route(
    "GET",
    "openapi.json",
    "This document: every route, its parameters, bodies and problems",
    {200: "application/json"},
    access=Access.PUBLIC,
)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return submission.Answer(status=200, body=_document()).response()


@functools.cache
def _document() -> dict[str, Any]:
    return document(OPERATIONS)

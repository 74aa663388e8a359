"""HTTP triggers: submit jobs; list and inspect runs, their logs and metrics; cancel; jobs, models, clusters,
dead letters; health.

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
from aztrain.domain.errors import InvalidTransition
from aztrain.domain.runs import Run, RunState
from aztrain.service.bootstrap import control_plane
from aztrain.service.run_outputs import AmbiguousRun, RunFiles, find_run, read_log, read_metrics
from aztrain.service.views import (
    cluster_view,
    dead_letter_view,
    dump,
    job_view,
    lineage_view,
    model_view,
    run_detail,
    run_view,
    window_view,
)
from functions import submission
from functions.openapi import Body, Header, Operation, PathParameter, document
from functions.pagination import page
from functions.problems import ApiProblem, Handler, bad_request, guarded, invalid

bp = func.Blueprint()
log = logging.getLogger(__name__)

#: Every route this blueprint serves, as the OpenAPI document describes it.
OPERATIONS: list[Operation] = []

RUN_ID = PathParameter(api.RUN_REF_PATTERN, "a run id, or a unique prefix of one (at least 6 characters)")
NAME = PathParameter(api.NAME_PATTERN, "a job (and model) name: 3-63 lowercase letters, digits or '-'")
VERSION = PathParameter(r"^[1-9][0-9]{0,8}$", "a version number, from 1")
LOG_HEADERS = (
    Header("X-Log-Offset", "Byte offset of the first byte returned"),
    Header("X-Log-Next-Offset", "Where to continue (`?offset=`) to follow the log"),
    Header("X-Log-Size", "The log's size when read"),
    Header("X-Run-State", "The run's state when read: follow until it is terminal and nothing new arrives"),
)
_MAX_CANDIDATES = 20

Q = TypeVar("Q", bound=BaseModel)


def _route(
    method: str, route: str, summary: str, responses: dict[int, Body], **details: Any
) -> Callable[[Handler], Any]:
    """Register a route with the blueprint, inside the problem guard, and record it for the OpenAPI document."""

    def register(handler: Handler) -> Any:
        OPERATIONS.append(
            Operation(
                method=method, route=route, name=handler.__name__, summary=summary, responses=responses, **details
            )
        )
        return bp.route(route=route, methods=[method])(guarded(handler))

    return register


def _run_route(
    method: str, suffix: str, summary: str, responses: dict[int, Body], **details: Any
) -> Callable[[Handler], Any]:
    """A route of one run (`runs/{run_id}<suffix>`): 400 malformed id, 404 no such run, 409 ambiguous prefix."""
    return _route(
        method, "runs/{run_id}" + suffix, summary, responses, errors=(400, 404, 409), path={"run_id": RUN_ID}, **details
    )


def _json(body: dict[str, Any], status: int = 200) -> func.HttpResponse:
    return submission.Answer(status, body).response()


def _query(model: type[Q], req: func.HttpRequest) -> Q:
    """The query as `model`; an empty value (`?job=`, as forms send) means the parameter is not given."""
    try:
        return model.model_validate({name: value for name, value in req.params.items() if value != ""})
    except ValidationError as exc:
        raise bad_request(exc) from None


def _param(req: func.HttpRequest, name: str, shape: PathParameter) -> str:
    """A route parameter that has its shape; a 400 naming the shape otherwise (the value is not echoed)."""
    value = str(req.route_params.get(name, ""))
    if not re.fullmatch(shape.pattern, value):
        raise invalid(name, f"must be {shape.description}")
    return value


def _run(req: func.HttpRequest) -> Run:
    """The run the route names, by id or unique prefix: 400 malformed, 404 absent, 409 ambiguous."""
    ref = _param(req, "run_id", RUN_ID)
    try:
        return find_run(control_plane().store, ref)
    except AmbiguousRun as exc:
        raise ApiProblem(409, "ambiguous-run-id", str(exc), candidates=exc.candidates[:_MAX_CANDIDATES]) from None


def _runs_container() -> str:
    return control_plane().settings.runs_container


# --------------------------------------------------------------------------------------------- jobs


@_route(
    "POST",
    "jobs",
    "Submit a manifest (JSON or YAML); starts a run, returns the run of an identical manifest, "
    "or registers a watching job that waits for its data",
    {202: api.Submitted, 200: api.Submitted},
    errors=(400, 413, 415, 422),
    query=api.SubmitQuery,
    manifest_body=True,
    request_headers=(submission.IDEMPOTENCY_KEY, submission.REQUEST_ID),
    response_headers={202: (submission.LOCATION, submission.REPLAYED), 200: (submission.REPLAYED,)},
)
def submit_job(req: func.HttpRequest) -> func.HttpResponse:
    """202 with a new run (or `waiting`), 200 with an existing one; 422 (with the REJECTED run) if invalid."""
    return submission.submit(req, control_plane(), force=_query(api.SubmitQuery, req).force)


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
    jobs, next_token = page(
        control_plane().store.list_jobs(), lambda j: j.name, limit=query.limit, continuation=query.continuation
    )
    return _json({"jobs": [job_view(j) for j in jobs], "next": next_token})


@_route(
    "GET",
    "jobs/{name}/window",
    "A watched job's pending retraining window: arrivals so far, when it fires, or why it does not",
    {200: api.WindowView},
    errors=(400, 404),
    path={"name": NAME},
)
def job_window(req: func.HttpRequest) -> func.HttpResponse:
    name = _param(req, "name", NAME)
    return _json(window_view(name, control_plane().window(name)))


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
    versions, next_token = page(
        control_plane().store.model_versions(),
        # Names never contain a space, which sorts before any name character: name order, then version.
        lambda v: f"{v.name} {v.version:010d}",
        limit=query.limit,
        continuation=query.continuation,
    )
    return _json({"models": [model_view(v) for v in versions], "next": next_token})


@_route(
    "GET",
    "models/{name}",
    "A model's versions and its current (latest promoted) version",
    {200: api.ModelVersions},
    errors=(400, 404),
    path={"name": NAME},
)
def model_versions(req: func.HttpRequest) -> func.HttpResponse:
    service = control_plane()
    name = _param(req, "name", NAME)
    versions = service.store.model_versions(name)
    if not versions:
        raise ApiProblem(404, "not-found", f"model {name!r} has no versions")
    current = service.current_model(name)
    return _json(
        {"name": name, "current": current.version if current else None, "versions": [model_view(v) for v in versions]}
    )


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
    return _json(lineage_view(control_plane().lineage(name, version), runs_container=_runs_container()))


# --------------------------------------------------------------------------------------------- runs


@_route("GET", "runs", "Runs, newest first, a page at a time", {200: api.RunList}, errors=(400,), query=api.RunsQuery)
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    query = _query(api.RunsQuery, req)
    runs = control_plane().store.find_runs(job=query.job, states=query.state or None)
    # Run ids sort newest first, so a new run never lands after a page already read.
    chosen, next_token = page(runs, lambda r: r.id, limit=query.limit, continuation=query.continuation)
    container = _runs_container()
    return _json({"runs": [run_view(r, runs_container=container) for r in chosen], "next": next_token})


@_run_route(
    "GET",
    "",
    "A run with its history (refused transitions only with ?all=true), by id or unique id prefix",
    {200: api.RunDetail},
    query=api.RunQuery,
)
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    shown = _query(api.RunQuery, req)
    run = _run(req)
    history = [t for t in control_plane().store.history(run.id) if t.applied or shown.all]
    return _json(run_detail(run, history, runs_container=_runs_container()))


@_run_route(
    "POST",
    "/cancel",
    "Ask a run to stop (idempotent while it stops)",
    {202: api.RunView},
)
def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    run = _run(req)
    try:
        canceled = control_plane().cancel(run.id, cause="http:cancel")
    except InvalidTransition as exc:
        raise ApiProblem(409, "run-finished", str(exc), state=RunState(exc.state)) from None
    return _json(run_view(canceled, runs_container=_runs_container()), 202)


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
    run = _run(req)
    chunk = read_log(
        control_plane().data, RunFiles.of(run, _runs_container()), offset=query.offset or 0, tail=query.tail
    )
    headers = dict(
        zip(
            (h.name for h in LOG_HEADERS),
            (str(chunk.offset), str(chunk.next_offset), str(chunk.size), run.state.value),
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
    run = _run(req)
    epochs, final = read_metrics(control_plane().data, RunFiles.of(run, _runs_container()))
    metrics = api.Metrics(run_id=run.id, state=run.state, epochs=epochs, final=final or run.metrics or None)
    return _json(dump(metrics))


# ---------------------------------------------------------------------------------------- the rest


@_route(
    "GET", "clusters", "Clusters: desired vs observed nodes, active runs, last scale action", {200: api.ClusterList}
)
def list_clusters(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"clusters": [cluster_view(c) for c in control_plane().store.list_clusters()]})


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
    letters, next_token = page(
        control_plane().store.dead_letters(),
        # Event ids never hold a newline, which sorts before any of their characters: time order, then function.
        lambda d: f"{d.at.isoformat()}\n{d.function}\n{d.event_id}",
        limit=query.limit,
        continuation=query.continuation,
    )
    return _json({"deadletters": [dead_letter_view(d) for d in letters], "next": next_token})


@_route("GET", "health", "Liveness plus a storage round trip", {200: api.Health, 503: api.Health})
def health(req: func.HttpRequest) -> func.HttpResponse:
    """A misconfigured app says so at once; the storage error itself goes to the log, not the reply."""
    service = control_plane()
    try:
        service.store.list_clusters()
    except Exception as exc:  # report, don't crash: this endpoint exists to say what is wrong
        log.warning("health: storage unreachable", exc_info=True)
        storage = f"unreachable ({type(exc).__name__}); see the log"
        return _json({"status": "unhealthy", "backend": service.backend.name, "storage": storage}, 503)
    return _json({"status": "ok", "backend": service.backend.name, "storage": "ok"})


@_route(
    "GET", "openapi.json", "This document: every route, its parameters, bodies and problems", {200: "application/json"}
)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return _json(_document())


@functools.cache
def _document() -> dict[str, Any]:
    return document(OPERATIONS)

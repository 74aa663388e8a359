"""HTTP triggers: submit jobs, list and inspect runs, cancel, health."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import azure.functions as func

from aztrain.bootstrap import control_plane
from aztrain.errors import InvalidTransition, NotFound
from aztrain.runs import RunState
from aztrain.views import cluster_view, job_view, lineage_view, model_view, run_view, window_view

bp = func.Blueprint()
log = logging.getLogger(__name__)

_MAX_LIMIT = 500


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


def _error(status: int, message: str, **extra: Any) -> func.HttpResponse:
    return _json({"error": message, **extra}, status)


@bp.route(route="jobs", methods=["POST"])
def submit_job(req: func.HttpRequest) -> func.HttpResponse:
    """Submit a manifest (JSON or YAML body). `?force=true` reruns an identical manifest."""
    request_id = req.headers.get("x-request-id") or str(uuid.uuid4())
    force = req.params.get("force", "").lower() in ("1", "true", "yes")
    result = control_plane().submit(
        req.get_body(), trigger="http", cause=f"http:{request_id}", source="http", force=force
    )
    run = result.run
    if run.state is RunState.REJECTED:
        return _error(400, run.error, run=run_view(run))
    body = {"run": run_view(run), "created": result.created, "reason": result.reason}
    return _json(body, 202 if result.created else 200)


@bp.route(route="jobs", methods=["GET"])
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"jobs": [job_view(j) for j in control_plane().store.list_jobs()]})


@bp.route(route="jobs/{name}/window", methods=["GET"])
def job_window(req: func.HttpRequest) -> func.HttpResponse:
    """A watched job's pending retraining window: arrivals so far, when it fires, or why it does not."""
    name = req.route_params["name"]
    try:
        window = control_plane().window(name)
    except NotFound as exc:
        return _error(404, str(exc))
    return _json(window_view(name, window))


@bp.route(route="models", methods=["GET"])
def list_models(req: func.HttpRequest) -> func.HttpResponse:
    versions = control_plane().store.model_versions()
    return _json({"models": [model_view(v) for v in versions]})


@bp.route(route="models/{name}", methods=["GET"])
def model_versions(req: func.HttpRequest) -> func.HttpResponse:
    service = control_plane()
    name = req.route_params["name"]
    versions = service.store.model_versions(name)
    if not versions:
        return _error(404, f"model {name!r} has no versions")
    current = service.current_model(name)
    return _json(
        {"name": name, "current": current.version if current else None, "versions": [model_view(v) for v in versions]}
    )


@bp.route(route="models/{name}/versions/{version}", methods=["GET"])
def model_lineage(req: func.HttpRequest) -> func.HttpResponse:
    """Lineage of one version: model → run → snapshot → blobs."""
    try:
        name, version = req.route_params["name"], int(req.route_params["version"])
        service = control_plane()
        lineage = service.lineage(name, version)
    except ValueError:
        return _error(400, "version must be a whole number")
    except NotFound as exc:
        return _error(404, str(exc))
    return _json(lineage_view(*lineage))


@bp.route(route="runs", methods=["GET"])
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    """Runs newest first; filter with `?job=`, `?state=` (repeatable, comma-separated) and `?limit=`."""
    try:
        states = [RunState(s.strip().upper()) for s in req.params.get("state", "").split(",") if s.strip()]
        limit = min(int(req.params.get("limit", "50")), _MAX_LIMIT)
    except ValueError as exc:
        return _error(400, f"bad query: {exc}; states are {', '.join(s.value for s in RunState)}")
    runs = control_plane().store.find_runs(job=req.params.get("job") or None, states=states or None, limit=limit)
    return _json({"runs": [run_view(r) for r in runs]})


@bp.route(route="runs/{run_id}", methods=["GET"])
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    service = control_plane()
    try:
        run = service.get_run(req.route_params["run_id"])
    except NotFound as exc:
        return _error(404, str(exc))
    return _json(run_view(run, service.store.history(run.id)))


@bp.route(route="runs/{run_id}/cancel", methods=["POST"])
def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    try:
        run = control_plane().cancel(req.route_params["run_id"], cause="http:cancel")
    except NotFound as exc:
        return _error(404, str(exc))
    except InvalidTransition as exc:
        return _error(409, str(exc), state=exc.state)
    return _json(run_view(run), 202)


@bp.route(route="clusters", methods=["GET"])
def list_clusters(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"clusters": [cluster_view(c) for c in control_plane().store.list_clusters()]})


@bp.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness plus a storage round trip, so a misconfigured app says so at once."""
    service = control_plane()
    try:
        service.store.list_clusters()
    except Exception as exc:  # report, don't crash: this endpoint exists to say what is wrong
        log.warning("health: storage unreachable: %s", exc)
        return _json({"status": "unhealthy", "backend": service.backend.name, "storage": str(exc)[:300]}, 503)
    return _json({"status": "ok", "backend": service.backend.name, "storage": "ok"})

"""The HTTP side of a submit: the body refused before parsing, rejections as problems, idempotent replies."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel, Field

from aztrain.api import models as api
from aztrain.api.teams import DryRunView
from aztrain.domain.errors import SYNTAX, ManifestError
from aztrain.domain.identity import Principal
from aztrain.domain.runs import RunState
from aztrain.service import telemetry
from aztrain.service.facade import ControlPlane, KeyReused
from functions.openapi import Header
from functions.problems import PROBLEM_TYPE, ApiProblem, invalid, problem_body

IDEMPOTENCY_KEY = Header(
    "Idempotency-Key",
    "Makes a retried submit safe: the same key returns the first answer and creates one run. 1-255 visible "
    "ASCII characters, or a structured-field string (in double quotes) of them; anything else is a 400",
    r'^(?:"[\x21\x23-\x7e]{1,255}"|[\x21-\x7e]{1,255})$',
)
#: A structured-field string (RFC 9651 §3.3.3) of visible characters: the key is what is between the quotes.
_QUOTED_KEY = re.compile(r'"([\x21\x23-\x7e]{1,255})"')
REQUEST_ID = Header(
    "X-Request-Id",
    "Recorded as the run's cause (`http:<id>`) and, without a `traceparent`, its correlation id. "
    "1-128 visible ASCII characters; anything else (an empty value too) is a 400",
    r"^[\x21-\x7e]{1,128}$",
)
LOCATION = Header("Location", "The new run (/api/runs/<id>), or a waiting job's window (/api/jobs/<name>/window)")
REPLAYED = Header(
    "Idempotent-Replayed", "Sent (as true) when this is the stored answer to an earlier request", enum=("true",)
)
#: Media types a manifest may be sent as (a missing Content-Type is fine too); the service reads YAML, a JSON superset.
MANIFEST_MEDIA_TYPES = frozenset(
    {"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"}
)


class Answer(BaseModel):
    """A reply as data, so the first answer to an idempotent request can be stored and replayed."""

    status: int
    body: dict[str, Any]
    media_type: str = "application/json"
    headers: dict[str, str] = Field(default_factory=dict)

    def response(self, **headers: str) -> func.HttpResponse:
        return func.HttpResponse(
            json.dumps(self.body, indent=2),
            status_code=self.status,
            mimetype=self.media_type,
            headers={**self.headers, **headers},
        )


def submit(req: func.HttpRequest, service: ControlPlane, *, force: bool, by: Principal) -> func.HttpResponse:
    """Submit the request's manifest for the signed-in `by`: once per `Idempotency-Key`, when one is given."""
    manifest = _manifest(req, service.settings.max_manifest_bytes)
    key = _idempotency_key(req)
    request_id = _request_id(req)
    cause = f"http:{request_id}"
    # One id follows the run everywhere: the caller's W3C trace id if it sent one, else its request id.
    correlation = telemetry.trace_id_of(req.headers.get("traceparent")) or request_id
    path = urlsplit(req.url).path

    def answer(run_id: str | None) -> Answer:
        result = service.submit(
            manifest,
            trigger="http",
            cause=cause,
            source="http",
            force=force,
            run_id=run_id,
            correlation=correlation,
            by=by,
        )
        run = result.run
        if result.created:  # its first steps now, through the run-steps queue, not at the reconciler's next pass
            service.request_steps(run)
        if run and run.state is RunState.REJECTED:
            return _rejected(service.queries.view(run), path)
        body = {
            "run": service.queries.view(run).model_dump(mode="json", by_alias=True) if run else None,
            "created": result.created,
            "reason": result.reason,
            "job": result.job,
            "waiting": result.waiting,
        }
        if not (result.created or result.waiting):
            return Answer(status=200, body=body)
        # A job waiting for data has no run to point at yet: its window says what will start one.
        location = f"/api/runs/{run.id}" if run else f"/api/jobs/{result.job}/window"
        return Answer(status=202, body=body, headers={"Location": location})

    if key is None:
        return answer(None).response()
    try:
        first = service.once(key, f"force={force}\n".encode() + manifest, answer, keep=lambda mine: mine.status < 400)
    except KeyReused as exc:
        raise ApiProblem(422, "idempotency-key-reused", str(exc)) from None
    return first.answer.response(**{REPLAYED.name: "true"} if first.replayed else {})


def dry_run(req: func.HttpRequest, service: ControlPlane, *, by: Principal) -> DryRunView:
    """What submitting the request's manifest would do now; an invalid manifest is a 422 problem, nothing recorded."""
    manifest = _manifest(req, service.settings.max_manifest_bytes)
    # A dry run uses neither header, but checks them as the document says, as a submit would.
    _idempotency_key(req)
    _request_id(req)
    try:
        return service.dry_run(manifest, by=by)
    except ManifestError as exc:
        syntax = any(problem.field == SYNTAX for problem in exc.problems)
        status, slug = (400, "malformed-manifest") if syntax else (422, "invalid-manifest")
        errors = [api.FieldError(field=problem.field, message=problem.message) for problem in exc.problems]
        raise ApiProblem(status, slug, str(exc), errors=errors) from None


def _manifest(req: func.HttpRequest, limit: int) -> bytes:
    """The body, refused before anything parses it when its type is not JSON/YAML or it is over the limit."""
    media_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in MANIFEST_MEDIA_TYPES and not media_type.endswith(("+json", "+yaml")):
        raise ApiProblem(415, "unsupported-media-type", "send the manifest as application/json or application/yaml")
    declared = req.headers.get("content-length", "").strip()
    if declared and not declared.isdigit():
        raise invalid("Content-Length", "not a number of bytes")
    too_large = f"the manifest is larger than the limit of {limit} bytes"
    if declared and int(declared) > limit:  # refused on the declaration alone
        raise ApiProblem(413, "too-large", too_large)
    body = req.get_body()
    if len(body) > limit:
        raise ApiProblem(413, "too-large", too_large)
    return body


def _rejected(view: api.RunView, path: str) -> Answer:
    """A manifest the service recorded as REJECTED, as a problem carrying the run and its problems."""
    syntax = any(problem.field == SYNTAX for problem in view.problems)  # not YAML or JSON at all: malformed
    problem = ApiProblem(
        400 if syntax else 422,
        "malformed-manifest" if syntax else "invalid-manifest",
        view.error,
        errors=view.problems,
        run=view,
    )
    return Answer(status=problem.status, body=problem_body(problem, path), media_type=PROBLEM_TYPE)


def _idempotency_key(req: func.HttpRequest) -> str | None:
    raw: str | None = req.headers.get("idempotency-key")
    if raw is None:
        return None
    if not re.fullmatch(IDEMPOTENCY_KEY.pattern, raw):
        raise invalid(IDEMPOTENCY_KEY.name, "use 1-255 visible ASCII characters, e.g. a UUID")
    quoted = _QUOTED_KEY.fullmatch(raw)
    return quoted.group(1) if quoted else raw


def _request_id(req: func.HttpRequest) -> str:
    """The caller's request id, refused unless it has the documented shape; a new one when none is sent."""
    given: str | None = req.headers.get("x-request-id")
    if given is None:
        return str(uuid.uuid4())
    if not re.fullmatch(REQUEST_ID.pattern, given):
        raise invalid(REQUEST_ID.name, "use 1-128 visible ASCII characters, e.g. a UUID")
    return given

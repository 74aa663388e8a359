"""The HTTP side of a submit: the body refused before parsing, rejections as problems, idempotent replies."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from aztrain.api import models as api
from aztrain.domain.identity import Principal
from aztrain.domain.layout import new_run_id
from aztrain.domain.runs import Run, RunState
from aztrain.service import telemetry
from aztrain.service.facade import ControlPlane
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
#: The service's message for a document that is not YAML or JSON at all: malformed (400), not invalid (422).
_NOT_YAML = "not valid YAML or JSON"
_IDEMPOTENCY_SCOPE = "http-idempotency"
_REPLY_SCOPE = "http-replies"


@dataclass(frozen=True)
class Answer:
    """A reply as data, so the first answer to an idempotent request can be stored and replayed."""

    status: int
    body: dict[str, Any]
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

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
        if run and run.state is RunState.REJECTED:
            return _rejected(run, service.queries.view(run), path)
        body = {
            "run": service.queries.view(run).model_dump(mode="json", by_alias=True) if run else None,
            "created": result.created,
            "reason": result.reason,
            "job": result.job,
            "waiting": result.waiting,
        }
        if not (result.created or result.waiting):
            return Answer(200, body)
        # A job waiting for data has no run to point at yet: its window says what will start one.
        location = f"/api/runs/{run.id}" if run else f"/api/jobs/{result.job}/window"
        return Answer(202, body, headers={"Location": location})

    if key is None:
        return answer(None).response()
    digest = hashlib.sha256(f"force={force}\n".encode() + manifest).hexdigest()[:32]
    return _idempotent(service, key, digest, answer)


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


def _rejected(run: Run, view: api.RunView, path: str) -> Answer:
    """A manifest the service recorded as REJECTED, as a problem carrying the run."""
    syntax = _NOT_YAML in run.error
    problem = ApiProblem(
        400 if syntax else 422,
        "malformed-manifest" if syntax else "invalid-manifest",
        run.error,
        errors=_field_errors(run.error),
        run=view,
    )
    return Answer(problem.status, problem_body(problem, path), PROBLEM_TYPE)


_ERROR_PREFIX = re.compile(r"^invalid manifest(?: \([^)]*\))?: ")
_FIELD = r"[\w.\[\]()-]+"


def _field_errors(error: str) -> list[api.FieldError]:
    """The service's `invalid manifest: <field>: <message>; ...` as one entry per field."""
    errors = []
    for problem in re.split(rf"; (?={_FIELD}: )", _ERROR_PREFIX.sub("", error, count=1)):
        match = re.fullmatch(rf"({_FIELD}): (.*)", problem, flags=re.DOTALL)
        field_name, message = match.groups() if match else ("(document)", problem)
        errors.append(api.FieldError(field=field_name, message=message))
    return errors


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


def _idempotent(service: ControlPlane, key: str, digest: str, answer: Callable[[str], Answer]) -> func.HttpResponse:
    """The first answer for `key`: its run id is claimed before the run exists, its reply after.

    A retry finds the claimed run id (so the service returns that run rather than making another) and
    the stored reply. A rejection is not stored: its run never changes, so it is answered the same again.
    """
    store = service.store
    claimed = store.claim(_IDEMPOTENCY_SCOPE, key, f"{new_run_id(service.now())} {digest}")
    run_id, first_digest = claimed.split(" ", 1)
    if first_digest != digest:
        raise ApiProblem(
            422,
            "idempotency-key-reused",
            "this Idempotency-Key was used for a different request; use a new key for a new request",
        )
    mine = answer(run_id)
    if mine.status >= 400:
        return mine.response()
    reply = {"status": mine.status, "body": mine.body, "headers": mine.headers}
    first = json.loads(store.claim(_REPLY_SCOPE, key, json.dumps(reply)))
    replayed = first != reply
    return Answer(first["status"], first["body"], headers=first["headers"]).response(
        **{REPLAYED.name: "true"} if replayed else {}
    )

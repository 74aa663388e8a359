"""Errors as RFC 9457 problem details (`application/problem+json`), and the guard every route runs inside."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import ValidationError

from aztrain.api.models import FieldError, Problem
from aztrain.domain.errors import Forbidden, NotFound
from aztrain.service.facade import AmbiguousRun, InvalidContinuation

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
#: Problem type URIs: `<base><slug>`, each documented in docs/api.md.
TYPE_BASE = "https://aztrain.dev/problems/"


class ApiProblem(Exception):
    """Raised by a route to answer with a problem: `slug` names its kind, `extra` adds members (`run`, ...).

    `headers` go on the response (a 405's `Allow`).
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def bad_request(error: ValidationError) -> ApiProblem:
    """A 400 naming every query parameter at fault."""
    errors = [
        FieldError(field=".".join(str(part) for part in e["loc"]) or "query", message=e["msg"]) for e in error.errors()
    ]
    return ApiProblem(400, "bad-request", "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors)


def invalid(name: str, message: str) -> ApiProblem:
    """A 400 for one malformed parameter or header, naming it and the shape it must have."""
    return ApiProblem(400, "bad-request", f"{name}: {message}", errors=[FieldError(field=name, message=message)])


def problem_body(problem: ApiProblem, path: str) -> dict[str, Any]:
    """The problem as JSON, for the request at `path`; members that do not apply are left out."""
    members = {
        "type": TYPE_BASE + problem.slug,
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        "instance": path,
        "errors": problem.errors,
        "error": problem.detail,
        **problem.extra,
    }
    body = Problem.model_validate({name: value for name, value in members.items() if value is not None})
    return body.model_dump(mode="json", exclude_unset=True, by_alias=True)


def problem_response(problem: ApiProblem, req: func.HttpRequest) -> func.HttpResponse:
    body = problem_body(problem, urlsplit(req.url).path)
    return func.HttpResponse(
        json.dumps(body, indent=2), status_code=problem.status, mimetype=PROBLEM_TYPE, headers=problem.headers
    )


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def guarded(handler: Handler) -> Handler:
    """Answer problems as problem details, and an unexpected failure as a 500 that shows no internals.

    The details of a 500 go to the log under a correlation id, which the reply carries.
    """

    @functools.wraps(handler)
    def route(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except ApiProblem as problem:
            return problem_response(problem, req)
        except NotFound as exc:
            return problem_response(ApiProblem(404, "not-found", str(exc)), req)
        except AmbiguousRun as exc:
            return problem_response(ApiProblem(409, "ambiguous-run-id", str(exc), candidates=exc.candidates), req)
        except InvalidContinuation as exc:
            return problem_response(invalid("continuation", str(exc)), req)
        except Forbidden as exc:
            return problem_response(
                ApiProblem(403, "forbidden", f"{exc}: needs {exc.missing}", missing=exc.missing), req
            )
        except Exception:
            correlation_id = str(uuid.uuid4())
            log.exception("%s %s failed (correlation id %s)", req.method, urlsplit(req.url).path, correlation_id)
            detail = f"the server could not complete the request; quote correlation id {correlation_id} to report it"
            return problem_response(ApiProblem(500, "internal", detail, correlation_id=correlation_id), req)

    return route

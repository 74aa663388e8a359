"""The OpenAPI 3.1 document of the HTTP API, generated from the routes as they are registered.

Every route is declared once, with `Operation` (`functions/http_api.py`): that registers the
function with the blueprint and records what it accepts and answers here, from the same pydantic
models that validate its queries and shape its JSON (`aztrain.api.models`), and the manifest model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aztrain.api import models as api
from aztrain.domain.manifest import JobManifest
from functions.problems import PROBLEM_TYPE

API_VERSION = "1.0.0"
MANIFEST_TYPES = ("application/json", "application/yaml")
_REF = "#/components/schemas/{model}"
_PARAMETER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class PathParameter:
    """A route parameter and the shape it is checked against before anything is looked up."""

    pattern: str
    description: str


@dataclass(frozen=True)
class Header:
    """A request or response header, and the shape its value has (a pattern, or one of `enum`)."""

    name: str
    description: str
    pattern: str = ""
    enum: tuple[str, ...] = ()

    @property
    def schema(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"pattern": self.pattern} if self.pattern else {}
        return {"type": "string", **shape, **({"enum": list(self.enum)} if self.enum else {})}


#: A response: a model (JSON), a media type whose body is text, or None (no body).
#: A JSON model, a media type, nothing, or one of several models (the query decides which).
Body = type[BaseModel] | str | None | tuple[type[BaseModel], ...]


@dataclass(frozen=True)
class Operation:
    """One HTTP route as the document describes it."""

    method: str
    route: str  # below /api, e.g. "runs/{run_id}"
    name: str  # the function name, also the operationId
    summary: str
    responses: dict[int, Body]
    errors: tuple[int, ...] = ()
    query: type[BaseModel] | None = None
    path: dict[str, PathParameter] = field(default_factory=dict)
    manifest_body: bool = False
    json_body: type[BaseModel] | None = None  # a JSON request body other than a manifest
    request_headers: tuple[Header, ...] = ()
    response_headers: dict[int, tuple[Header, ...]] = field(default_factory=dict)
    access: str = ""  # the role the caller needs (`functions.identity.Access`), as docs/api.md words it

    @property
    def path_template(self) -> str:
        return f"/api/{self.route}"


def document(operations: list[Operation]) -> dict[str, Any]:
    """The OpenAPI document for `operations`."""
    requests: set[type[BaseModel]] = {JobManifest, *(op.query for op in operations if op.query)}
    requests.update(op.json_body for op in operations if op.json_body)
    replies: set[type[BaseModel]] = {api.Problem}
    for op in operations:
        replies.update(body for body in op.responses.values() if isinstance(body, type))
        replies.update(model for body in op.responses.values() if isinstance(body, tuple) for model in body)
    modes: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((model, "validation") for model in sorted(requests, key=lambda m: m.__name__)),
        *((model, "serialization") for model in sorted(replies, key=lambda m: m.__name__)),
    ]
    _, defs = models_json_schema(modes, by_alias=True, ref_template=_REF)
    schemas: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path_template, {})[op.method.lower()] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aztrain control plane",
            "version": API_VERSION,
            "description": "Submit training jobs, follow their runs, logs and metrics. Errors are RFC 9457 "
            "problem details; see docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                # In Azure the routes need a function key (header or `code=`); the local dev host needs none.
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
        "security": [{"functionKey": []}, {}],
    }


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "parameters": _path_parameters(op) + _query_parameters(op, schemas) + _header_parameters(op),
        "responses": {str(status): _response(op, status, body) for status, body in op.responses.items()},
    }
    for status in op.errors:
        spec["responses"][str(status)] = {
            "description": _PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
        }
    spec["responses"]["500"] = {
        "description": "Unexpected failure: a problem with a correlation id, details only in the log",
        "content": {PROBLEM_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
    }
    if op.access:
        spec["x-aztrain-access"] = op.access
        spec["description"] = f"Needs: {op.access}."
    if op.json_body:
        body = {"schema": {"$ref": _REF.format(model=op.json_body.__name__)}}
        spec["requestBody"] = {"required": True, "content": {"application/json": body}}
    if op.manifest_body:
        manifest = {"schema": {"$ref": _REF.format(model="JobManifest")}}
        spec["requestBody"] = {"required": True, "content": dict.fromkeys(MANIFEST_TYPES, manifest)}
    return spec


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    names = _PARAMETER.findall(op.route)
    if set(names) != set(op.path):
        raise ValueError(f"route {op.route}: declare exactly its parameters {names}, not {sorted(op.path)}")
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": op.path[name].description,
            "schema": {"type": "string", "pattern": op.path[name].pattern},
        }
        for name in names
    ]


def _query_parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    model = schemas[op.query.__name__]
    parameters = []
    for name, schema in model["properties"].items():
        parameter = {
            "name": name,
            "in": "query",
            "required": name in model.get("required", ()),
            "description": schema.get("description", ""),
            "schema": _present(schema),
        }
        if schema.get("type") == "array":  # `?state=A,B` (a repeated parameter is joined the same way)
            parameter.update(style="form", explode=False)
        parameters.append(parameter)
    return parameters


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value's schema: a parameter left out is the model's None, so a sent value is never null."""
    kept = {k: v for k, v in schema.items() if k not in ("description", "title")}
    choices = [choice for choice in kept.pop("anyOf", ()) if choice != {"type": "null"}]
    if kept.get("default", "") is None:
        del kept["default"]
    if len(choices) == 1:
        return {**choices[0], **kept}
    return {**kept, "anyOf": choices} if choices else kept


def _header_parameters(op: Operation) -> list[dict[str, Any]]:
    return [
        {
            "name": header.name,
            "in": "header",
            "required": False,
            "description": header.description,
            "schema": header.schema,
        }
        for header in op.request_headers
    ]


def _response(op: Operation, status: int, body: Body) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _SUCCESS_DESCRIPTIONS.get(status, "OK")}
    if isinstance(body, type):
        response["content"] = {"application/json": {"schema": {"$ref": _REF.format(model=body.__name__)}}}
    elif isinstance(body, tuple):
        one_of = [{"$ref": _REF.format(model=model.__name__)} for model in body]
        response["content"] = {"application/json": {"schema": {"oneOf": one_of}}}
    elif isinstance(body, str):  # a media type: text, or a JSON document this API does not model (itself)
        response["content"] = {body: {"schema": {"type": "string" if body.startswith("text/") else "object"}}}
    headers = op.response_headers.get(status, ())
    if headers:
        response["headers"] = {h.name: {"description": h.description, "schema": h.schema} for h in headers}
    return response


_SUCCESS_DESCRIPTIONS = {
    200: "OK",
    202: "Accepted: the run was created and proceeds in the background",
    503: "Unhealthy: storage is unreachable",
}
_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request: a route parameter, query value, header or document that is not well-formed, "
    "or a continuation token this API did not issue",
    401: "Not signed in: no X-MS-CLIENT-PRINCIPAL (App Service Authentication, or the dev host's users)",
    403: "Signed in, but without the role or team membership the request needs (named in `missing`)",
    404: "Not found: well-formed, but no such run, job or model",
    409: "Conflict: an ambiguous run id prefix, or a run whose state forbids the request",
    413: "The manifest is larger than the limit (declared Content-Length or actual body)",
    415: "Unsupported Content-Type: send JSON or YAML (or no Content-Type)",
    422: "A well-formed manifest that fails validation (recorded as a REJECTED run, in `run`), "
    "or an Idempotency-Key reused with a different request",
}

"""405 Method Not Allowed, with `Allow` and a problem body, for every method a documented path does not declare.

The Functions host answers a method that no function of a path declares with an empty 404
(azure-functions-host#10098, "Function app should return 405 for request on known route but unsupported
HTTP method"); RFC 9110 §15.5.6 wants 405 and an `Allow` header. So the app answers it itself: each path
gets one more function, declared for exactly the methods its operations leave out, and the Functions
host and the dev host route those requests to it alike. It is a generic `httpTrigger` because the
`route` decorator accepts only seven methods (not TRACE); the host reads the same function.json either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import azure.functions as func

from functions.openapi import Operation
from functions.problems import ApiProblem, Handler, guarded

#: The methods a Functions HTTP trigger can declare (function.json `methods`).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def register(bp: func.Blueprint, operations: Iterable[Operation]) -> None:
    """Add a 405 function for each path of `operations`, for the methods none of them declares."""
    declared: dict[str, set[str]] = {}
    for op in operations:
        declared.setdefault(op.route, set()).add(op.method)
    for route, methods in declared.items():
        undeclared = [method.lower() for method in HTTP_METHODS if method not in methods]
        name = "not_allowed_" + (re.sub(r"[^a-z0-9]+", "_", route).strip("_") or "root")
        bp.function_name(name)(
            bp.generic_trigger(arg_name="req", type="httpTrigger", route=route, methods=undeclared)(
                bp.generic_output_binding(arg_name="$return", type="http")(guarded(_answer(sorted(methods))))
            )
        )


def _answer(allowed: list[str]) -> Handler:
    allow = ", ".join(allowed)

    def not_allowed(req: func.HttpRequest) -> func.HttpResponse:
        detail = f"{req.method} is not allowed here; use {allow}"
        raise ApiProblem(405, "method-not-allowed", detail, headers={"Allow": allow})

    return not_allowed

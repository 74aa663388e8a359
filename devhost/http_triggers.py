"""HTTP triggers: request -> `func.HttpRequest` -> user function -> `func.HttpResponse` -> reply."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import azure.functions as func

from devhost.functions_index import FunctionIndex
from devhost.invoke import Invoker
from devhost.reply import Reply, correlation_id

log = logging.getLogger(__name__)

# Framing is the server's job; a function's own values would contradict the body it is sent with.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class HttpTriggers:
    """Routes requests under the route prefix to HTTP trigger functions."""

    def __init__(self, index: FunctionIndex, invoker: Invoker) -> None:
        self._index = index
        self._invoker = invoker

    def handle(
        self,
        *,
        method: str,
        url: str,
        route_path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        """Answer a request whose path, below the route prefix, is `route_path` (still URL-encoded)."""
        segments = [unquote(s) for s in route_path.strip("/").split("/")] if route_path.strip("/") else []
        resolution = self._index.resolve(method, segments)
        function = resolution.function
        if function is None:
            if resolution.allowed:
                allow = ", ".join(sorted(resolution.allowed))
                reply = Reply.problem(405, f"method {method} not allowed; allowed: {allow}")
                return Reply(reply.status, reply.body, (*reply.headers, ("Allow", allow)))
            return Reply.error(404, f"no HTTP function at /{route_path.strip('/')}")
        request = func.HttpRequest(
            method=method,
            url=url,
            headers=dict(headers),
            params=dict(params),
            route_params=dict(resolution.route_params),
            body=body,
        )
        try:
            result = self._invoker.call(function, request)
            return to_reply(result)
        except Exception:
            correlation = correlation_id()
            log.exception(
                "function %s failed on %s %s [correlation id %s]", function.name, method, route_path, correlation
            )
            return Reply.internal_error(correlation)


def to_reply(result: Any) -> Reply:
    """Convert what an HTTP function returned, as the worker's `HttpResponseConverter` does.

    A `func.HttpResponse` keeps its status, headers and body; Content-Type comes from its
    mimetype (with charset for text/*) unless set explicitly. A `str` is a 200 text/plain
    body. None (no `$return`) is a 204.
    """
    if isinstance(result, func.HttpResponse):
        headers = [(k, v) for k, v in result.headers.items() if k.lower() not in _HOP_HEADERS]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype, charset = result.mimetype, result.charset
            headers.append(
                ("Content-Type", f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype)
            )
        return Reply(int(result.status_code), result.get_body(), tuple(headers))
    if isinstance(result, str):
        return Reply(200, result.encode(), (("Content-Type", "text/plain; charset=utf-8"),))
    if result is None:
        return Reply(204)
    raise TypeError(f"an HTTP function must return func.HttpResponse or str, not {type(result).__name__}")

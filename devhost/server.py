"""The dev host's HTTP front door: a stdlib threading server for HTTP triggers and the Event Grid webhook."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from devhost.http_triggers import HttpTriggers
from devhost.reply import Reply, correlation_id
from devhost.webhook import EVENT_TYPE_HEADER, WEBHOOK_PATH, EventGridWebhook

log = logging.getLogger(__name__)

#: Signs a request in as the platform's authentication would: the headers the app is handed. The host
#: knows no users itself; its caller brings them (aztrain's wiring: `devhost.identity`).
SignIn = Callable[[Mapping[str, str]], dict[str, str]]


class SignInRefused(LookupError):
    """The request names a caller that cannot be signed in: answered 401 with the message."""


class Dispatcher:
    """Chooses between the Event Grid webhook and the HTTP triggers for one request."""

    def __init__(
        self,
        http: HttpTriggers,
        webhook: EventGridWebhook,
        *,
        route_prefix: str = "api",
        sign_in: SignIn | None = None,
    ) -> None:
        self._http = http
        self._webhook = webhook
        self._sign_in = sign_in
        self._prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""

    def dispatch(self, *, method: str, target: str, base_url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """Answer `method target` (target = path plus query string, as on the request line)."""
        parts = urlsplit(target)
        path = parts.path or "/"
        params = _query_params(parts.query)
        if path.rstrip("/").casefold() == WEBHOOK_PATH:
            if method != "POST":
                return Reply(405, b"", (("Allow", "POST"),))
            return self._webhook.handle(
                function_name=params.get("functionName"), event_type=headers.get(EVENT_TYPE_HEADER), body=body
            )
        if self._prefix and not (path == self._prefix or path.startswith(self._prefix + "/")):
            return Reply.error(404, f"not found: {path}")
        try:  # signed in as App Service Authentication would: the platform's header, never the caller's
            headers = self._sign_in(headers) if self._sign_in else dict(headers)
        except SignInRefused as exc:
            return Reply.error(401, str(exc))
        return self._http.handle(
            method=method,
            url=base_url + target,
            route_path=path[len(self._prefix) :],
            params=params,
            headers=headers,
            body=body,
        )


class DevServer:
    """Serves a `Dispatcher` on host:port from a background thread; port 0 picks a free port."""

    def __init__(self, dispatcher: Dispatcher, *, host: str = "127.0.0.1", port: int = 7071) -> None:
        self._dispatcher = dispatcher
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:7071 (the bound port once started)."""
        port = self._server.server_address[1] if self._server is not None else self._port
        return f"http://{self._host}:{port}"

    def start(self) -> None:
        """Bind and start serving in a daemon thread."""
        if self._server is not None:
            return
        server = _Server((self._host, self._port), _Handler)
        server.dispatcher = self._dispatcher
        server.base_url = f"http://{self._host}:{server.server_address[1]}"
        self._server = server
        # A short poll interval so shutdown() returns promptly.
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="devhost-http")
        self._thread.daemon = True
        self._thread.start()
        log.info("serving on %s", self.url)

    def stop(self) -> None:
        """Stop accepting requests and close the socket. Requests in flight finish on their own threads."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # Event Grid opens many connections at once in a burst; 5 refused some
    dispatcher: Dispatcher
    base_url: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.1 keeps connections alive for clients that reuse them; every reply sets Content-Length.
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        started = time.monotonic()
        try:
            body = self._read_body()
        except ValueError as exc:
            self._write(Reply.error(400, str(exc)))
            self.close_connection = True
            return
        headers = _merge_headers(self.headers.items())
        try:
            reply = self.server.dispatcher.dispatch(
                method=self.command, target=self.path, base_url=self.server.base_url, headers=headers, body=body
            )
        except Exception:  # a bug in the host itself; still answer, and log it
            correlation = correlation_id()
            log.exception(
                "dev host failed on %s %s [correlation id %s]", self.command, urlsplit(self.path).path, correlation
            )
            reply = Reply.internal_error(correlation)
        self._write(reply)
        # The path only: query strings may carry function keys (`?code=`).
        log.info(
            "%s %s -> %d (%.0f ms)",
            self.command,
            urlsplit(self.path).path,
            reply.status,
            (time.monotonic() - started) * 1000,
        )

    def __getattr__(self, name: str) -> Any:
        # Every method goes to the dispatcher (TRACE, QUERY, ...), as the Functions host routes them:
        # the functions decide, not the stdlib's HTML 501 for a method it has no `do_` for.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ValueError(f"bad Content-Length: {length!r}") from None
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers, ignored
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)  # the CRLF after each chunk

    def _write(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to tell it

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _serve logs one line per request, without the query string

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


def _merge_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    # Repeated headers are joined with ", " as HTTP allows, like the host does.
    merged: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def _query_params(query: str) -> dict[str, str]:
    # Repeated keys are joined with "," as the host's StringValues.ToString() does.
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params

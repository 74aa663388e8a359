"""The local Event Grid custom topic: what the control plane's outbound events are published to on this machine.

It speaks the publisher's wire format: `POST /api/events` with an `aeg-sas-key` header (or
`Authorization: Bearer <key>`, the local stand-in for an Entra token) and a CloudEvents batch
(`application/cloudevents-batch+json`). Each event must carry CloudEvents 1.0's required
attributes; a bad key is a 401, a bad event a 400, as in Azure. Accepted events are kept (for
`aztrain events tail`, `GET /api/events?after=<n>`) and pushed to the webhook subscribers listed in
a JSON file, `{"subscriptions": [{"name": ..., "endpoint": ..., "types": [...]}]}`, as Event Grid
pushes CloudEvents: first the abuse-protection handshake (`OPTIONS` with `WebHook-Request-Origin`,
answered with `WebHook-Allowed-Origin`), then one `application/cloudevents+json` POST per event,
retried with backoff until a 2xx (400 and 413 are not retried). Each subscriber gets its events in
the order they were published.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

EVENTS_PATH = "/api/events"
ORIGIN = "eventgrid.azure.net"
REQUIRED = ("id", "source", "specversion", "type")
NOT_RETRIED = frozenset({400, 413})
MAX_EVENTS_KEPT = 10_000


@dataclass(frozen=True)
class Subscriber:
    """A webhook subscription: where to push, and which event types (all when empty)."""

    name: str
    endpoint: str
    types: tuple[str, ...] = ()

    def wants(self, event: dict[str, Any]) -> bool:
        return not self.types or event.get("type") in self.types


def load_subscribers(path: Path | None) -> list[Subscriber]:
    """The subscriptions in the config file (none if there is no file)."""
    if path is None or not path.is_file():
        return []
    entries = json.loads(path.read_text()).get("subscriptions", [])
    return [Subscriber(e["name"], e["endpoint"], tuple(e.get("types", ()))) for e in entries]


def problems(event: Any) -> list[str]:
    """Why an event is not a valid CloudEvents 1.0 event (structured JSON); empty when it is."""
    if not isinstance(event, dict):
        return ["an event must be a JSON object"]
    found = [f"missing required attribute {name!r}" for name in REQUIRED if not event.get(name)]
    if event.get("specversion") not in (None, "1.0"):
        found.append(f"specversion must be '1.0', not {event['specversion']!r}")
    bad = [n for n in event if n not in ("data", "data_base64") and not (n.isalnum() and n == n.lower())]
    return found + [f"attribute name {name!r} is not lowercase alphanumeric" for name in bad]


class _Pusher:
    """Delivers one subscriber's events in order, with the handshake first and retries with backoff."""

    def __init__(self, subscriber: Subscriber, *, first_backoff: float, max_backoff: float, max_attempts: int) -> None:
        self.subscriber = subscriber
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._first_backoff, self._max_backoff, self._max_attempts = first_backoff, max_backoff, max_attempts
        self._validated = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"topic-{subscriber.name}", daemon=True)
        self._thread.start()

    def push(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._deliver(event)
            finally:
                self._queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        for attempt in range(1, self._max_attempts + 1):
            status, detail = self._attempt(event)
            if status is not None and 200 <= status < 300:
                return
            if status in NOT_RETRIED or attempt == self._max_attempts or self._stop.is_set():
                log.error("topic: giving up on event %s for %s: %s", event["id"], self.subscriber.name, detail)
                return
            backoff = min(self._max_backoff, self._first_backoff * 2 ** (attempt - 1))
            log.warning(
                "topic: event %s for %s: %s; retry in %.1f s", event["id"], self.subscriber.name, detail, backoff
            )
            self._stop.wait(backoff)

    def _attempt(self, event: dict[str, Any]) -> tuple[int | None, str]:
        if not self._validated:
            status, detail = self._handshake()
            if status is None or not 200 <= status < 300:
                return status, f"validation handshake failed: {detail}"
            self._validated = True
        headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
        status, detail, _ = _request(self.subscriber.endpoint, "POST", json.dumps(event).encode(), headers)
        return status, detail

    def _handshake(self) -> tuple[int | None, str]:
        status, detail, allowed = _request(
            self.subscriber.endpoint, "OPTIONS", None, {"WebHook-Request-Origin": ORIGIN}
        )
        if status is not None and 200 <= status < 300 and allowed not in (ORIGIN, "*"):
            return 403, f"WebHook-Allowed-Origin is {allowed!r}, not {ORIGIN!r}"
        return status, detail


def _request(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int | None, str, str]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, "", response.headers.get("WebHook-Allowed-Origin", "")
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}", ""
    except (urllib.error.URLError, OSError) as exc:
        return None, f"no response ({exc})", ""


class LocalTopic:
    """The topic on host:port (0 picks a free port). `failing` answers every publish with a 500, to try the outbox."""

    def __init__(
        self,
        *,
        key: str,
        subscribers: list[Subscriber] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        first_backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_attempts: int = 30,
    ) -> None:
        self.key = key
        self.failing = False
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._address = (host, port)
        self._pushers = [
            _Pusher(s, first_backoff=first_backoff, max_backoff=max_backoff, max_attempts=max_attempts)
            for s in subscribers or []
        ]
        self._server: _Server | None = None

    @property
    def endpoint(self) -> str:
        """The URL publishers send to (`AZTRAIN_EVENTS_TOPIC_ENDPOINT`)."""
        return f"http://{self._address[0]}:{self._address[1]}{EVENTS_PATH}"

    def start(self) -> None:
        server = _Server(self._address, _Handler)
        server.topic = self
        self._server = server
        self._address = (self._address[0], server.server_address[1])  # a restart binds the same port
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        log.info("local Event Grid topic on %s", self.endpoint)

    def stop(self) -> None:
        """Stop answering publishers (the topic is down); `start` brings it back on the same port."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def close(self) -> None:
        """Stop, and stop pushing to subscribers (what is not delivered yet is dropped)."""
        self.stop()
        for pusher in self._pushers:
            pusher.stop()

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until every subscriber has been sent everything accepted so far (or given up on it)."""
        deadline = time.monotonic() + timeout
        while not all(p.idle() for p in self._pushers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def accept(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one publish request: (status, JSON reply)."""
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.key not in (headers.get("aeg-sas-key"), bearer):
            return 401, {"error": {"code": "Unauthorized", "message": "the aeg-sas-key or token is not valid"}}
        if self.failing:
            return 500, {"error": {"code": "InternalServerError", "message": "the topic is failing (local switch)"}}
        try:
            batch = json.loads(body)
        except ValueError as exc:
            return 400, {"error": {"code": "BadRequest", "message": f"not JSON: {exc}"}}
        events = batch if isinstance(batch, list) else [batch]
        found = [f"event {i}: {p}" for i, event in enumerate(events) for p in problems(event)]
        if found:
            return 400, {"error": {"code": "BadRequest", "message": "; ".join(found)}}
        with self._lock:
            self.events = (self.events + events)[-MAX_EVENTS_KEPT:]
            for event in events:
                for pusher in self._pushers:
                    if pusher.subscriber.wants(event):
                        pusher.push(event)
        return 200, {}

    def since(self, after: int) -> tuple[list[dict[str, Any]], int]:
        """Events accepted after the first `after` (for `aztrain events tail`), and the count so far."""
        with self._lock:
            return self.events[after:], len(self.events)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    topic: LocalTopic


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        if urlsplit(self.path).path != EVENTS_PATH:
            return self._reply(404, {"error": {"code": "NotFound", "message": self.path}})
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._reply(*self.server.topic.accept(headers, body))

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != EVENTS_PATH:
            return self._reply(404, {"error": {"code": "NotFound", "message": self.path}})
        if self.headers.get("aeg-sas-key") != self.server.topic.key:
            return self._reply(401, {"error": {"code": "Unauthorized", "message": "the aeg-sas-key is not valid"}})
        after = int(parse_qs(parts.query).get("after", ["0"])[0])
        events, count = self.server.topic.since(after)
        self._reply(200, {"events": events, "next": count})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("topic: %s", format % args)

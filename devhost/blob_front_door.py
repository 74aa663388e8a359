"""A front door for Azurite's blob service that raises `BlobCreated` as each blob is written.

Clients talk to the front door's port as if it were Azurite; every request is relayed as is
(Shared Key signatures cover the path, method and `x-ms-*` headers, none of which change).
When Azurite acknowledges a write that Azure Storage publishes `BlobCreated` for — Put Blob,
Put Block List, Copy Blob — the event is built at once with the real `api` field and handed
to `deliver`, as the blob watcher does for what it lists. The cost is per write: nothing is
ever listed, however many blobs a container holds.

Event ids are the watcher's (a UUID5 of URL and ETag), so the start-up sweep of blobs written
while the host was down and the front door agree on the id of every blob version.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from devhost.blob_events import Event, Subscription, blob_created_event, blob_subject

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

log = logging.getLogger(__name__)

#: Hop-by-hop headers are the relay's own business on each side.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"})


class BlobFrontDoor:
    """Relays HTTP on `host:port` (0: any free port) to the blob endpoint of `service`, Azurite's."""

    def __init__(
        self,
        service: BlobServiceClient,
        subscriptions: Sequence[Subscription],
        deliver: Callable[[Subscription, Event], None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._service = service
        upstream = urlsplit(service.url)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self._subscriptions = list(subscriptions)
        self._deliver = deliver
        self._server = ThreadingHTTPServer((host, port), _Relay, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self._server.door = self  # type: ignore[attr-defined]
        self._local = threading.local()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port clients use (the bound one once started)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and relay from a daemon thread."""
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devhost-blob-front-door",
            daemon=True,
        )
        self._thread.start()
        log.info("blob front door on port %d relays to %s:%d", self.port, *self._upstream)

    def stop(self) -> None:
        """Stop relaying; requests in flight finish."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def relay(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request to Azurite (one kept-alive connection per relaying thread); returns its answer."""
        for attempt in (1, 2):  # Azurite may have closed an idle connection: one fresh try
            connection = self._connection()
            try:
                connection.request(method, target, body=body or None, headers=dict(headers))
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def published(self, method: str, target: str, request: Mapping[str, str], status: int) -> None:
        """Raise `BlobCreated` if this acknowledged request wrote a blob version Azure publishes an event for."""
        api = _api(method, target, request, status)
        path = unquote(urlsplit(target).path).lstrip("/").split("/", 2)
        if api is None or len(path) < 3 or not path[2]:
            return
        _, container, name = path
        matching = [
            s for s in self._subscriptions if s.container == container and s.matches(blob_subject(container, name))
        ]
        if not matching:
            return
        client = self._service.get_container_client(container)
        event = blob_created_event(
            account=client.account_name or "devstoreaccount1",
            container=container,
            blob=client.get_blob_client(name).get_blob_properties(),  # what was committed, as a listing shows it
            url=client.get_blob_client(name).url,  # the watcher's URL too: one id per blob version
            api=api,
        )
        for subscription in matching:
            self._deliver(subscription, event)

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        return connection


def _api(method: str, target: str, request: Mapping[str, str], status: int) -> str | None:
    """The `api` of the BlobCreated event Azure publishes for this request, or None if it publishes none."""
    if method != "PUT" or status not in (201, 202):
        return None
    comp = parse_qs(urlsplit(target).query).get("comp", [""])[0]
    if comp == "blocklist":
        return "PutBlockList"
    if comp:
        return None  # blocks, appends, pages, metadata, properties, tags...: no new blob version event
    if "x-ms-copy-source" in request:
        return "CopyBlob"
    return "PutBlob" if "x-ms-blob-type" in request else None  # a container create has no blob type


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for SDK clients that reuse connections

    def _relay(self) -> None:
        door: BlobFrontDoor = self.server.door  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = {k.lower(): v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, headers, payload = door.relay(self.command, self.path, request, body)
        except (http.client.HTTPException, OSError) as exc:
            log.warning("blob front door: Azurite did not answer %s %s: %s", self.command, self.path, exc)
            self.send_error(502, "Azurite did not answer")
            return
        try:  # queued before the client hears back, so an acknowledged write always has its event
            door.published(self.command, self.path, request, status)
        except Exception:  # an event we could not build must not fail the write the client made
            log.exception("blob front door: no event for %s %s", self.command, self.path)
        self.send_response_only(status)
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        # HEAD answers carry the blob's length and no body; everything else is sent as read.
        blob_length = next((v for k, v in headers if k.lower() == "content-length"), "0")
        self.send_header("Content-Length", blob_length if self.command == "HEAD" else str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_MERGE = _relay

    def log_message(self, format: str, *args: object) -> None:
        log.debug("blob front door: " + format, *args)

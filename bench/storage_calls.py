"""Storage round trips, counted: every HTTP request the Azure SDK sends, by service port.

The benchmark wraps the SDK's transport once, so what it counts is what crosses the wire
(retries included), not what the code meant to call.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline.transport import RequestsTransport


class StorageCalls:
    """Counts requests per port (Azurite serves blobs, queues and tables on three ports)."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self._lock = threading.Lock()

    def install(self) -> StorageCalls:
        """Count from now on, in this process (until `uninstall`; or use it as a context manager)."""
        self._send = send = RequestsTransport.send
        counts, lock = self._counts, self._lock

        def counted(transport: RequestsTransport, request: Any, **kwargs: Any) -> Any:
            with lock:
                counts[urlsplit(request.url).port or 0] += 1
            return send(transport, request, **kwargs)

        RequestsTransport.send = counted  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        RequestsTransport.send = self._send  # type: ignore[method-assign]

    def __enter__(self) -> StorageCalls:
        return self.install()

    def __exit__(self, *_: object) -> None:
        self.uninstall()

    def total(self, port: int) -> int:
        """Requests sent to `port` so far."""
        with self._lock:
            return self._counts[port]

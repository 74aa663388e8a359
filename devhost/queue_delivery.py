"""Event Grid's delivery to a `StorageQueue` endpoint: each event written to the subscription's queue.

As Event Grid writes it (MicrosoftDocs/azure-docs#102923: messages are base64-encoded, which is what
the Functions queue trigger expects): one message per event, the event's JSON (Event Grid schema, a
single object, not an array) base64-encoded, with the time-to-live the subscription asks for
(`-1`: never expires, so no event is dropped while the function is down). A write that fails is
tried again a few times; one that still fails is logged, and the blob watcher's sweep at the next
start delivers that blob again.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from devhost.blob_events import Event, Subscription

if TYPE_CHECKING:
    from azure.storage.queue import QueueServiceClient

log = logging.getLogger(__name__)
storage_log = logging.getLogger(__name__ + ".storage")
storage_log.setLevel(logging.WARNING)

#: Message time-to-live Event Grid is given in infra/events.bicep: infinite.
NEVER_EXPIRES = -1
ATTEMPTS = 5


def queue_message(event: Event) -> str:
    """The queue message Event Grid writes for `event`: its JSON, base64-encoded."""
    return base64.b64encode(json.dumps(event).encode()).decode()


class QueueSender:
    """Writes each event to its subscription's queue, then calls `written(queue_name)`."""

    def __init__(
        self, service: QueueServiceClient, *, written: Callable[[str], None] = lambda queue_name: None
    ) -> None:
        self._service = service
        self._written = written

    @classmethod
    def from_connection_string(cls, connection_string: str, *, written: Callable[[str], None]) -> QueueSender:
        from azure.storage.queue import QueueServiceClient  # lazy: indexing an app imports this package

        service = QueueServiceClient.from_connection_string(
            connection_string, logger=storage_log, retry_total=0, connection_timeout=5
        )
        return cls(service, written=written)

    def submit(self, subscription: Subscription, event: Event) -> None:
        """Write `event` to `subscription.queue_name` (synchronously: the write is acknowledged after its event)."""
        queue = self._service.get_queue_client(subscription.queue_name)
        content = queue_message(event)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                queue.send_message(content, time_to_live=NEVER_EXPIRES)
                break
            except Exception as exc:
                if attempt == ATTEMPTS:
                    log.error("event %s not written to queue %s: %s", event.get("id"), subscription.queue_name, exc)
                    return
                time.sleep(0.05 * 2**attempt)
        self._written(subscription.queue_name)

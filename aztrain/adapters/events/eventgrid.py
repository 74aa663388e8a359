"""`EventSink` on azure-eventgrid's `EventGridPublisherClient`: outbound events to a custom topic, CloudEvents 1.0.

With a key (`AZTRAIN_EVENTS_TOPIC_KEY`, locally) requests carry `aeg-sas-key`; without one the
function's managed identity signs them (it holds the topic's EventGrid Data Sender role). The SDK
is imported on first publish, so `import function_app` never pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aztrain.domain.records import OutboundEvent


class EventGridSink:
    """Publishes each batch in one request; raises when the topic does not accept it."""

    def __init__(self, endpoint: str, *, key: str = "", credential: Any = None) -> None:
        self._endpoint = endpoint
        self._key = key
        self._credential = credential
        self._client: Any = None

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        if not events:
            return
        from azure.core.messaging import CloudEvent

        # No SDK retries: a failed batch stays in the outbox and the reconciler sends it again, so a
        # topic that is down never holds a trigger handler past its deadline. Per call: the client
        # does not pass its constructor's options on to a basic (custom) topic's pipeline.
        self._publisher().send(
            [CloudEvent(**cloud_event_fields(e)) for e in events], retry_total=0, connection_timeout=5, read_timeout=10
        )

    def _publisher(self) -> Any:
        if self._client is None:
            # The SDK hands `send`'s transport options to its CloudEvent serializer too, which logs a
            # warning per option per event ("... is not a known attribute ... and will be ignored").
            logging.getLogger("azure.eventgrid._legacy._generated._serialization").setLevel(logging.ERROR)
            from azure.core.credentials import AzureKeyCredential
            from azure.eventgrid import EventGridPublisherClient

            credential = AzureKeyCredential(self._key) if self._key else self._credential
            self._client = EventGridPublisherClient(self._endpoint, credential)
        return self._client


def cloud_event_fields(event: OutboundEvent) -> dict[str, Any]:
    """`azure.core.messaging.CloudEvent`'s arguments for an event (extensions only where set)."""
    extensions = {"correlationid": event.correlation, "causationid": event.cause}
    return {
        "source": event.source,
        "type": event.type,
        "id": event.id,
        "subject": event.subject,
        "time": event.time,
        "data": event.data,
        "datacontenttype": "application/json",
        "extensions": {k: v for k, v in extensions.items() if v},
    }

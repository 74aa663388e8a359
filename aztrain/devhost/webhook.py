"""The Functions host's Event Grid webhook: `POST /runtime/webhooks/EventGrid?functionName=<fn>`.

Contract (as the Event Grid extension implements it):

* header `aeg-event-type: SubscriptionValidation` -> 200 `{"validationResponse": <data.validationCode>}`
  of the first event;
* `Notification` -> the body is a JSON array of events (a single object is accepted too);
  the function runs once per event, in order; 202 when all succeed, 500 as soon as one
  raises, so Event Grid retries the delivery;
* `Unsubscribe` -> 202, nothing runs;
* anything else, or no header -> 400; bad JSON -> 400; unknown function -> 404.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from aztrain.devhost.functions_index import EventGridFunction
from aztrain.devhost.invoke import Invoker
from aztrain.devhost.reply import Reply

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"  # matched case-insensitively, like the host
EVENT_TYPE_HEADER = "aeg-event-type"


class EventGridWebhook:
    """Turns webhook requests into invocations of Event Grid trigger functions."""

    def __init__(self, functions: Mapping[str, EventGridFunction], invoker: Invoker) -> None:
        self._functions = functions
        self._invoker = invoker

    def handle(self, *, function_name: str | None, event_type: str | None, body: bytes) -> Reply:
        """Answer one webhook POST."""
        function = self._functions.get(function_name or "")
        if function is None:
            return Reply.error(404, f"no Event Grid function named {function_name!r}")
        kind = (event_type or "").strip().casefold()
        if kind not in ("subscriptionvalidation", "notification", "unsubscribe"):
            return Reply.error(400, f"missing or unknown {EVENT_TYPE_HEADER} header: {event_type!r}")
        if kind == "unsubscribe":
            return Reply(202)
        try:
            events = _parse_events(body)
        except ValueError as exc:
            return Reply.error(400, str(exc))
        if kind == "subscriptionvalidation":
            return _validation_reply(events)
        for event in events:
            failure = self._deliver(function, event)
            if failure is not None:
                return failure
        return Reply(202)

    def _deliver(self, function: EventGridFunction, event: dict[str, Any]) -> Reply | None:
        # The worker's own converter: same field mapping and eventTime parsing as in Azure.
        trigger_value = EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
        started = time.monotonic()
        try:
            self._invoker.call(function, trigger_value)
        except Exception as exc:
            log.exception("function %s failed on event %s", function.name, event.get("id"))
            return Reply.error(500, f"{type(exc).__name__}: {exc}")
        log.info(
            "event %s (%s %s) -> %s: ok in %.0f ms",
            event.get("id"),
            event.get("eventType") or event.get("type"),
            event.get("subject"),
            function.name,
            (time.monotonic() - started) * 1000,
        )
        return None


def _parse_events(body: bytes) -> list[dict[str, Any]]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    events = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(event, dict) for event in events):
        raise ValueError("body must be an event object or an array of event objects")
    return events


def _validation_reply(events: list[dict[str, Any]]) -> Reply:
    data = events[0].get("data") if events else None
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not code:
        return Reply.error(400, "SubscriptionValidation without data.validationCode")
    return Reply.json(200, {"validationResponse": code})

"""The Functions host's Event Grid webhook: `POST /runtime/webhooks/EventGrid?functionName=<fn>`.

Contract, as the Event Grid extension implements it (Azure/azure-sdk-for-net,
`Microsoft.Azure.WebJobs.Extensions.EventGrid`: `HttpRequestProcessor` and
`EventGridExtensionConfigProvider.ProcessEventsAsync`):

* header `aeg-event-type: SubscriptionValidation` -> 200 `{"validationResponse": <code>}`, the code
  read from `data.validationCode` of the first event of an array, or of a single object, whose
  `data` CloudEvents double-encodes (a JSON string holding the JSON object);
* `Notification` -> the body is a JSON array of events (a single object is accepted too); the
  function runs once per event, all of them, concurrently; 202 when all succeed, 500 if any
  failed, so Event Grid retries the whole delivery;
* `Unsubscribe` -> 202, nothing runs;
* anything else, or no header -> 400; bad JSON -> 400; unknown function -> 404.

A 500 carries no exception text, as in Azure: the failures are logged under the correlation
id the reply names.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from devhost.functions_index import EventGridFunction
from devhost.invoke import Invoker
from devhost.reply import Reply, correlation_id

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/runtime/webhooks/eventgrid"  # matched case-insensitively, like the host
EVENT_TYPE_HEADER = "aeg-event-type"
#: Invocations of one batch run at once, like the extension's Task.WhenAll, up to this many threads.
MAX_CONCURRENT_EVENTS = 8


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
            payload = _parse_json(body)
            if kind == "subscriptionvalidation":
                return Reply.json(200, {"validationResponse": _validation_code(payload)})
            events = _events(payload)
        except ValueError as exc:
            return Reply.error(400, str(exc))
        return self._notify(function, events)

    def _notify(self, function: EventGridFunction, events: list[dict[str, Any]]) -> Reply:
        correlation = correlation_id()
        workers = max(1, min(len(events), MAX_CONCURRENT_EVENTS))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="devhost-event") as pool:
            outcomes = list(pool.map(lambda event: self._deliver(function, event, correlation), events))
        if all(outcomes):
            return Reply(202)
        log.error(
            "%d of %d event(s) failed in %s; answering 500 [correlation id %s]",
            outcomes.count(False),
            len(events),
            function.name,
            correlation,
        )
        return Reply.internal_error(correlation)

    def _deliver(self, function: EventGridFunction, event: dict[str, Any], correlation: str) -> bool:
        """Run `function` on one event; True if it succeeded (a failure is logged under `correlation`)."""
        # The worker's own converter: same field mapping and eventTime parsing as in Azure.
        trigger_value = EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
        started = time.monotonic()
        try:
            self._invoker.call(function, trigger_value)
        except Exception:
            log.exception(
                "function %s failed on event %s [correlation id %s]", function.name, event.get("id"), correlation
            )
            return False
        log.info(
            "event %s (%s %s) -> %s: ok in %.0f ms",
            event.get("id"),
            event.get("eventType") or event.get("type"),
            event.get("subject"),
            function.name,
            (time.monotonic() - started) * 1000,
        )
        return True


def _parse_json(body: bytes | str) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None


def _events(payload: Any) -> list[dict[str, Any]]:
    events = payload if isinstance(payload, list) else [payload]
    if not all(isinstance(event, dict) for event in events):
        raise ValueError("body must be an event object or an array of event objects")
    return events


def _validation_code(payload: Any) -> str:
    if isinstance(payload, list):
        data = payload[0].get("data") if payload and isinstance(payload[0], dict) else None
    elif isinstance(payload, dict):
        data = payload.get("data")
        if isinstance(data, str):  # a CloudEvents validation event double-encodes its data
            data = _parse_json(data)
    else:
        data = None
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not code:
        raise ValueError("SubscriptionValidation without data.validationCode")
    return str(code)

"""Queue triggers: blob events as Event Grid writes them to the `blob-events` storage queue, and its poison queue.

The `BlobCreated` subscriptions deliver to a storage queue (infra/events.bicep), and the Functions
host reads it in batches (host.json `extensions.queues`): each message is one event, handled on its
own, many at once. What fails decides its own fate:

* input no retry can fix (not JSON, not a `BlobCreated`, a subject that is not a safe blob path) is
  a dead letter at once, with the reason, and the message is done;
* a manifest that is invalid, or too large for the store, is a REJECTED run (the service decides);
* anything else raises, so the host makes the message visible again and retries it, up to
  `maxDequeueCount` times; the last attempt records the error as the event's dead letter, and the
  host moves the message to `blob-events-poison`, whose trigger makes sure that dead letter exists.
  Nothing waits behind a poison message: every message is retried on its own.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from aztrain.service import telemetry
from aztrain.service.bootstrap import control_plane
from aztrain.service.facade import BlobEvent

bp = func.Blueprint()
log = logging.getLogger(__name__)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
#: The queue the BlobCreated subscriptions write to (infra/events.bicep `blobEventsQueue`).
BLOB_EVENTS_QUEUE = "blob-events"
#: Where the host moves a message that failed `MAX_DEQUEUE_COUNT` times (its `<queue>-poison` rule).
POISON_QUEUE = f"{BLOB_EVENTS_QUEUE}-poison"
#: host.json `extensions.queues.maxDequeueCount` (tests/unit/test_infra.py keeps the two equal).
MAX_DEQUEUE_COUNT = 5
#: The app setting naming the storage account (`AzureWebJobsStorage__accountName` with an identity in Azure).
CONNECTION = "AzureWebJobsStorage"
#: The function name dead letters of blob events are recorded under.
FUNCTION = "on_blob_event"


class _Unusable(ValueError):
    """A message no retry can make usable: the reason is its dead letter's."""


@bp.queue_trigger(arg_name="message", queue_name=BLOB_EVENTS_QUEUE, connection=CONNECTION)
def on_blob_event(message: func.QueueMessage) -> None:
    """One `BlobCreated` event: a manifest becomes its job and run, an upload its arrivals."""
    try:
        event = _event(message)
        blob = _blob_event(event)
    except _Unusable as exc:
        _dead_letter(message, _fields(message), str(exc))
        return
    attempt = message.dequeue_count or 1
    # The event's id is the correlation id of the runs it starts: in their history, job tags, logs and events.
    with telemetry.span("aztrain.blob_created", {"correlation_id": blob.id, "blob": f"{blob.container}/{blob.name}"}):
        try:
            control_plane().on_blob_created(blob)
        except Exception as exc:
            if attempt >= MAX_DEQUEUE_COUNT:  # the host moves it to the poison queue next: say why, once
                reason = f"failed {attempt} of {MAX_DEQUEUE_COUNT} attempts, last with {type(exc).__name__}: {exc}"
                try:
                    _dead_letter(message, event, reason)
                except Exception:  # storage is down too: the poison queue's trigger records it later
                    log.exception("event %s: dead letter not recorded yet", blob.id)
            raise
    if blob.time is not None:
        telemetry.event_handled("blob_created", (datetime.now(UTC) - blob.time).total_seconds())
    log.info("event %s (%s/%s): handled [correlation id %s]", blob.id, blob.container, blob.name, blob.id)


@bp.queue_trigger(arg_name="message", queue_name=POISON_QUEUE, connection=CONNECTION)
def on_blob_event_poison(message: func.QueueMessage) -> None:
    """A blob event that failed every attempt: it is a dead letter (the last attempt's reason stays, if recorded)."""
    _dead_letter(
        message,
        _fields(message),
        f"failed {MAX_DEQUEUE_COUNT} attempts (maxDequeueCount); the host moved it to {POISON_QUEUE}",
    )


def _event(message: func.QueueMessage) -> dict[str, Any]:
    """The event a message holds: one Event Grid event object, as Event Grid writes it."""
    try:
        event = json.loads(message.get_body())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Unusable(f"message is not a JSON event: {exc}") from None
    if not isinstance(event, dict):
        raise _Unusable("message is not an Event Grid event object")
    return event


def _blob_event(event: dict[str, Any]) -> BlobEvent:
    if event.get("eventType") != BLOB_CREATED:
        raise _Unusable(f"not a {BLOB_CREATED} event")
    data = event.get("data")
    data = data if isinstance(data, dict) else {}
    try:
        return BlobEvent.from_subject(
            str(event.get("id") or ""),
            str(event.get("subject") or ""),
            etag=str(data.get("eTag", "")),
            time=_time(event.get("eventTime")),
        )
    except ValueError as exc:
        raise _Unusable(str(exc)) from None


def _time(value: object) -> datetime | None:
    """The event's time, UTC; None when it is missing or unreadable (the run id then comes from a claim)."""
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _fields(message: func.QueueMessage) -> dict[str, Any]:
    """Whatever of the event a message shows, for its dead letter ({} when it is not a JSON object)."""
    try:
        return _event(message)
    except _Unusable:
        return {}


def _dead_letter(message: func.QueueMessage, event: dict[str, Any], reason: str) -> None:
    control_plane().dead_letter(
        function=FUNCTION,
        event_id=str(event.get("id") or f"message:{message.id}"),
        event_type=str(event.get("eventType") or ""),
        subject=str(event.get("subject") or ""),
        reason=reason,
    )

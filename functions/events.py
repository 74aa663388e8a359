"""Event Grid triggers: blobs created in the jobs container (manifests) and in data containers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from aztrain.bootstrap import control_plane
from aztrain.service import BlobEvent

bp = func.Blueprint()
log = logging.getLogger(__name__)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@bp.event_grid_trigger(arg_name="event")
def on_blob_created(event: func.EventGridEvent) -> None:
    """Record what the blob means and return quickly; errors raise so Event Grid redelivers.

    Events that can never succeed (wrong type, not a blob) are logged and acknowledged:
    redelivering them would only burn retries.
    """
    if event.event_type != BLOB_CREATED:
        log.warning("ignoring event %s of type %s", event.id, event.event_type)
        return
    data = event.get_json() or {}
    try:
        blob = BlobEvent.from_subject(
            event.id, event.subject, etag=str(data.get("eTag", "")), time=_utc(event.event_time)
        )
    except ValueError as exc:
        log.warning("ignoring event %s: %s", event.id, exc)
        return
    runs = control_plane().on_blob_created(blob)
    log.info("event %s (%s/%s): %s", event.id, blob.container, blob.name, [f"{r.id}:{r.state.value}" for r in runs])

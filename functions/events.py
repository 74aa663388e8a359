"""Event Grid triggers: blobs created (manifests, data) and Azure ML run status changes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from aztrain.adapters.azureml import phase_of
from aztrain.bootstrap import control_plane
from aztrain.service import BlobEvent

bp = func.Blueprint()
log = logging.getLogger(__name__)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"


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


@bp.event_grid_trigger(arg_name="event")
def on_run_status_changed(event: func.EventGridEvent) -> None:
    """An Azure ML job changed status. A hint, not the truth: late, duplicated or missing events
    are expected, the run's transition table refuses backwards moves, and the reconciler polls anyway.
    """
    data = event.get_json() or {}
    job_name, status = data.get("runId"), data.get("runStatus")
    if event.event_type != RUN_STATUS_CHANGED or not isinstance(job_name, str) or not isinstance(status, str):
        log.warning("ignoring event %s of type %s: no runId/runStatus", event.id, event.event_type)
        return
    run = control_plane().on_job_status(job_name, phase_of(status), cause=f"event:{event.id}")
    log.info(
        "event %s: job %s is %s -> run %s",
        event.id,
        job_name,
        status,
        f"{run.id}:{run.state.value}" if run else "unknown",
    )

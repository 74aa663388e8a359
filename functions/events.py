"""Event Grid trigger: Azure ML run status changes (blob events come through a queue: `blob_queue`).

A handler that cannot act on an event decides which kind of failure it is. Storage or backend
trouble raises, so Event Grid redelivers. An event no retry can fix (a wrong type, a subject that
is not a blob, a payload without the fields it needs) is recorded as a dead letter, with the
reason, and acknowledged: redelivering it would only burn retries.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from aztrain.domain.layout import is_run_id, run_id_of
from aztrain.service.bootstrap import control_plane

bp = func.Blueprint()
log = logging.getLogger(__name__)

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"


def _data(event: func.EventGridEvent) -> dict[str, Any]:
    """The event's `data` object ({} when it is absent or not an object)."""
    data = event.get_json()
    return data if isinstance(data, dict) else {}


def _dead_letter(function: str, event: func.EventGridEvent, reason: str) -> None:
    control_plane().dead_letter(
        function=function,
        event_id=str(event.id or ""),
        event_type=str(event.event_type or ""),
        subject=str(event.subject or ""),
        reason=reason,
    )


@bp.event_grid_trigger(arg_name="event")
def on_run_status_changed(event: func.EventGridEvent) -> None:
    """An Azure ML job changed status. A hint, not the truth: late, duplicated or missing events
    are expected, the run's transition table refuses backwards moves, and the reconciler polls anyway.
    """
    data = _data(event)
    job_name, status = data.get("runId"), data.get("runStatus")
    if event.event_type != RUN_STATUS_CHANGED:
        _dead_letter("on_run_status_changed", event, f"not a {RUN_STATUS_CHANGED} event")
        return
    if not isinstance(job_name, str) or not isinstance(status, str):
        _dead_letter("on_run_status_changed", event, "data has no runId and runStatus strings")
        return
    if not is_run_id(run_id_of(job_name)):  # a job of the workspace that this control plane did not submit
        log.info("event %s: job %r is not one of aztrain's; ignored", event.id, job_name)
        return
    run = control_plane().on_backend_status(job_name, status, cause=f"event:{event.id}")
    log.info(
        "event %s: job %s is %s -> run %s",
        event.id,
        job_name,
        status,
        f"{run.id}:{run.state.value}" if run else "unknown",
    )

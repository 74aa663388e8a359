"""Queue triggers: `run-steps` hints, one per run an HTTP submit just recorded, and their poison queue.

The submit answers as soon as the run is recorded ACCEPTED and queues one message naming it
(`ControlPlane.request_steps`); this trigger takes the run's first steps, within the queue's polling
interval (host.json `maxPollingInterval`) instead of the reconciler's next pass. Taking steps is
idempotent: a redelivered hint, or one for a run the reconciler already moved, changes nothing.
A message that names no run is a dead letter at once; one that keeps failing (the backend down)
is retried, then dead-lettered and moved to `run-steps-poison` exactly as blob events are
(`functions.blob_queue.attempted`, `poisoned`); the run itself is left to the reconciler.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from aztrain.domain.errors import NotFound
from aztrain.domain.layout import is_run_id
from aztrain.service.bootstrap import control_plane
from aztrain.service.facade import RUN_STEPS_QUEUE
from functions.blob_queue import CONNECTION, attempted, dead_letter, poisoned

bp = func.Blueprint()
log = logging.getLogger(__name__)

POISON_QUEUE = f"{RUN_STEPS_QUEUE}-poison"
#: The function name dead letters of run-steps hints are recorded under.
FUNCTION = "on_run_steps"
EVENT_TYPE = "aztrain.RunSteps"


@bp.queue_trigger(arg_name="message", queue_name=RUN_STEPS_QUEUE, connection=CONNECTION)
def on_run_steps(message: func.QueueMessage) -> None:
    """A hint that a run has steps due: take them (none, if it is already past them)."""
    hint = _hint(message)
    run_id = hint["subject"]
    if not is_run_id(run_id):
        dead_letter(message, hint, "message does not name a run", function=FUNCTION)
        return
    try:
        attempted(message, hint, lambda: _take(run_id), function=FUNCTION)
    except NotFound:  # recorded before its hint was queued: no retry will make it exist
        dead_letter(message, hint, f"no run {run_id}", function=FUNCTION)


@bp.queue_trigger(arg_name="message", queue_name=POISON_QUEUE, connection=CONNECTION)
def on_run_steps_poison(message: func.QueueMessage) -> None:
    """A hint that failed every attempt: a dead letter (its run is still the reconciler's to advance)."""
    poisoned(message, _hint(message), POISON_QUEUE, function=FUNCTION)


def _take(run_id: str) -> None:
    run = control_plane().take_steps(run_id)
    log.info("run %s: %s after its run-steps hint", run.id, run.state.value)


def _hint(message: func.QueueMessage) -> dict[str, Any]:
    """The fields a hint's dead letter names: the run id is its subject (and, with the queue, its id)."""
    body = message.get_body().decode("utf-8", errors="replace").strip()
    return {"id": f"{RUN_STEPS_QUEUE}:{body[:128]}", "eventType": EVENT_TYPE, "subject": body[:128]}

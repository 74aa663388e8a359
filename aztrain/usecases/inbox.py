"""The inbox: blob events recorded as they arrive, one write each, and acted on by the reconciler.

Event Grid wants a quick answer and delivers storms: the handler records each `BlobCreated`
(`on_blob_created`) and returns. The reconciler's pass (`process_inbox`) then acts on them,
oldest first: a manifest under `manifests/` is submitted (`intake.submit`) under a run id
derived from its event, so every delivery names the same run; data becomes one arrival per
upload for each job watching it, and launching is the windows' call (`retraining`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from aztrain.errors import NotFound
from aztrain.layout import blob_path_problem, event_run_id, intake_key, new_run_id
from aztrain.records import Arrival, Intake, JobRecord
from aztrain.retrain import watches
from aztrain.usecases.context import Context
from aztrain.usecases.intake import submit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobEvent:
    """The parts of a `Microsoft.Storage.BlobCreated` event the service uses."""

    id: str
    container: str
    name: str
    etag: str = ""
    time: datetime | None = None  # when storage raised the event

    @classmethod
    def from_subject(cls, event_id: str, subject: str, etag: str = "", time: datetime | None = None) -> BlobEvent:
        """Parse `/blobServices/default/containers/<c>/blobs/<name>`; `ValueError` if it is not a blob subject."""
        head, sep, name = subject.partition("/blobs/")
        prefix = "/blobServices/default/containers/"
        if not sep or not head.startswith(prefix) or not name:
            raise ValueError(f"not a blob event subject: {subject!r}")
        problem = blob_path_problem(name)
        if problem:
            raise ValueError(f"blob name {name!r} {problem}")
        return cls(id=event_id, container=head.removeprefix(prefix), name=name, etag=etag, time=time)


#: How long after an event was raised a delivery of it may still come (Event Grid retries for 24 hours).
_REDELIVERED_FOR = timedelta(days=2)
#: How far ahead of this clock a source's event time may be.
_CLOCK_SKEW = timedelta(hours=1)

#: Intakes read at a time: a page of the inbox (Table Storage returns at most 1,000 rows per page).
INBOX_PAGE = 1000
#: How long one pass may spend on the inbox before leaving the rest, oldest first, to the next.
INBOX_SECONDS = 120.0


def on_blob_created(ctx: Context, event: BlobEvent) -> None:
    """A blob landed: record it, one write, for the reconciler to act on (`process_inbox`).

    The control plane's own writes (the jobs container outside its manifests folder, the runs
    container) are ignored here, so they never trigger anything and cost nothing.
    """
    if _is_own_write(ctx, event):
        return
    raised = event.time if _plausible(ctx, event.time) else None
    key = intake_key(event.id, raised or ctx.now())
    ctx.store.record_intake(Intake(key, event.id, event.container, event.name, event.etag, raised))


def process_inbox(ctx: Context, *, seconds: float = INBOX_SECONDS) -> int:
    """Act on recorded blob events, oldest first: a manifest starts its job, data becomes arrivals.

    Page after page until the inbox is empty or `seconds` are spent. Each intake is forgotten
    once acted on; one that fails (storage down) is logged and stays, with what follows it in
    its page acted on still, and the pass moves on. Returns how many were acted on.
    """
    started, acted = time.monotonic(), 0
    watchers: dict[str, list[JobRecord]] = {}  # per container, for this pass: data events share one read
    while time.monotonic() - started < seconds:
        page = ctx.store.intakes(INBOX_PAGE)
        done = [intake.key for intake in page if _acted_on(ctx, intake, watchers)]
        ctx.store.remove_intakes(done)
        acted += len(done)
        if len(done) < INBOX_PAGE:  # the inbox is empty, or what is left failed: the next pass tries again
            break
    return acted


def _acted_on(ctx: Context, intake: Intake, watchers: dict[str, list[JobRecord]]) -> bool:
    event = BlobEvent(intake.event_id, intake.container, intake.name, intake.etag, intake.raised)
    try:
        if _is_manifest(ctx, event):
            _on_manifest_blob(ctx, event)
            watchers.clear()  # the manifest may have started or changed a watch
        else:
            if event.container not in watchers:
                watchers[event.container] = ctx.store.watching(event.container)
            _on_data_blob(ctx, event, watchers[event.container])
    except Exception:
        log.exception("inbox: event %s (%s/%s) not acted on yet", event.id, event.container, event.name)
        return False
    return True


def _is_manifest(ctx: Context, event: BlobEvent) -> bool:
    return event.container == ctx.settings.jobs_container and event.name.startswith(ctx.settings.manifests_prefix)


def _is_own_write(ctx: Context, event: BlobEvent) -> bool:
    own = event.container in (ctx.settings.jobs_container, ctx.settings.runs_container)
    return own and not _is_manifest(ctx, event)


def _plausible(ctx: Context, raised: datetime | None) -> bool:
    """An event time a delivery may carry (Event Grid always sends one, and retries for up to a day)."""
    now = ctx.now()
    return raised is not None and now - _REDELIVERED_FOR <= raised <= now + _CLOCK_SKEW


def _on_manifest_blob(ctx: Context, event: BlobEvent) -> None:
    # Every delivery of the event names the same run, so a redelivery finds its run instead of making another.
    run_id = (
        event_run_id(event.id, event.time)
        if event.time is not None
        else ctx.store.claim("blobcreated", event.id, new_run_id(ctx.now()))
    )
    source = f"{event.container}/{event.name}"
    try:
        text = ctx.data.read(event.container, event.name, max_bytes=ctx.settings.max_manifest_bytes)
    except NotFound:
        text = b""  # deleted before we read it: recorded as rejected, not retried forever
    submit(ctx, text, trigger="manifest", cause=event.id, source=source, run_id=run_id)


def _on_data_blob(ctx: Context, event: BlobEvent, watchers: list[JobRecord]) -> None:
    """Record the upload for every job watching it. Launching is the windows' call (`retraining`)."""
    key = hashlib.sha256(f"{event.container}/{event.name}\n{event.etag or event.id}".encode()).hexdigest()[:32]
    for job in watchers:
        if not watches(job.spec, event.container, event.name):
            continue
        # Storage stamps events to the whole second: an upload in the second the watch began is new data.
        if event.time and job.watch_since and event.time < job.watch_since.replace(microsecond=0):
            continue  # uploaded before the watch began: the job's first run reads it anyway
        ctx.store.record_arrival(Arrival(job=job.name, key=key, blob=event.name, at=ctx.now()))
        log.info("data %s/%s recorded for job %s", event.container, event.name, job.name)

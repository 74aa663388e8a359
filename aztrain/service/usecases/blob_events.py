"""Blob events: each `BlobCreated` acted on as it is delivered, one message of the blob-events queue at a time.

Event Grid writes every event to a storage queue, and the queue trigger calls `on_blob_created` for
each message, many at once (functions/blob_queue.py). A manifest under `manifests/` is submitted
(`intake.submit`) under a run id derived from its event, so every delivery names the same run, and
its first steps are taken at once; data becomes one arrival per upload for each job watching it, and
launching is the windows' call (`retraining`). Messages are independent: runs of one job stay one per
manifest under concurrency because every job and run write is conditional on its ETag.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aztrain.domain.errors import NotFound
from aztrain.domain.layout import blob_path_problem, event_run_id, new_run_id
from aztrain.domain.records import Arrival, JobRecord
from aztrain.domain.retrain import watches
from aztrain.domain.runs import RunState
from aztrain.service.usecases import progress
from aztrain.service.usecases.context import Context
from aztrain.service.usecases.intake import Submitted, submit

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


def on_blob_created(ctx: Context, event: BlobEvent) -> None:
    """A blob landed: a manifest starts its job and run, an upload becomes arrivals (see the module docstring).

    The control plane's own writes (the jobs container outside its manifests folder, the runs
    container) are ignored, so they never trigger anything and cost nothing. Storage trouble raises,
    so the message is delivered again; a redelivery finds the run its event names.
    """
    if _is_own_write(ctx, event):
        return
    if not _plausible(ctx, event.time):  # a time no delivery carries: the run id comes from a claim instead
        event = replace(event, time=None)
    if _is_manifest(ctx, event):
        _start(ctx, _on_manifest_blob(ctx, event))
        return
    arrivals = _arrivals_of(ctx, event, ctx.store.watching(event.container))
    ctx.store.record_arrivals(arrivals)
    if arrivals:
        log.info("upload %s/%s recorded for job(s) %s", event.container, event.name, ", ".join(a.job for a in arrivals))


def _start(ctx: Context, submitted: Submitted) -> None:
    """A new run's first steps, at once, so it does not wait for the reconciler's next pass (up to a minute).

    Its record is already durable: a step that fails (the backend unreachable) is left to that pass,
    never retried by redelivering the message, which would end as a dead letter of a run that exists.
    """
    run = submitted.run
    if run is None or run.state is not RunState.ACCEPTED:
        return
    try:
        progress.advance(ctx, run.id, held=run)
    except Exception:
        log.exception("run %s: first steps left to the reconciler's next pass", run.id)


def _is_manifest(ctx: Context, event: BlobEvent) -> bool:
    return event.container == ctx.settings.jobs_container and event.name.startswith(ctx.settings.manifests_prefix)


def _is_own_write(ctx: Context, event: BlobEvent) -> bool:
    own = event.container in (ctx.settings.jobs_container, ctx.settings.runs_container)
    return own and not _is_manifest(ctx, event)


def _plausible(ctx: Context, raised: datetime | None) -> bool:
    """An event time a delivery may carry (Event Grid always sends one, and retries for up to a day)."""
    now = ctx.now()
    return raised is not None and now - _REDELIVERED_FOR <= raised <= now + _CLOCK_SKEW


def _on_manifest_blob(ctx: Context, event: BlobEvent) -> Submitted:
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
    return submit(ctx, text, trigger="manifest", cause=event.id, source=source, run_id=run_id)


def _arrivals_of(ctx: Context, event: BlobEvent, watchers: list[JobRecord]) -> list[Arrival]:
    """The upload as an arrival for every job watching it. Launching is the windows' call (`retraining`)."""
    key = hashlib.sha256(f"{event.container}/{event.name}\n{event.etag or event.id}".encode()).hexdigest()[:32]
    return [
        Arrival(job=job.name, key=key, blob=event.name, at=ctx.now())
        for job in watchers
        if watches(job.spec, event.container, event.name)
        # Storage stamps events to the whole second: an upload in the second the watch began is new data;
        # one from before was there when the watch began, and the job's first run reads it anyway.
        and not (event.time and job.watch_since and event.time < job.watch_since.replace(microsecond=0))
    ]

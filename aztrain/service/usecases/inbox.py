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

from aztrain.domain.errors import NotFound
from aztrain.domain.layout import blob_path_problem, event_run_id, intake_key, new_run_id
from aztrain.domain.records import Arrival, Intake, JobRecord
from aztrain.domain.retrain import watches
from aztrain.service.usecases.context import Context
from aztrain.service.usecases.intake import submit

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
    once acted on; one that fails (storage down) is logged and stays for the next pass, and the
    others go on. Returns how many were acted on.
    """
    started, acted = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        page = ctx.store.intakes(INBOX_PAGE)
        done = _act_on(ctx, page)
        ctx.store.remove_intakes(done)
        acted += len(done)
        if len(done) < INBOX_PAGE:  # the inbox is empty, or what is left failed: the next pass tries again
            break
    return acted


def _act_on(ctx: Context, page: list[Intake]) -> list[str]:
    """The keys of the intakes acted on: each manifest in turn; the uploads' arrivals in one batch at the end."""
    done: list[str] = []
    uploads: list[str] = []
    arrivals: list[Arrival] = []
    watchers: dict[str, list[JobRecord]] = {}  # per container: the page's uploads share one read
    for intake in page:
        event = BlobEvent(intake.event_id, intake.container, intake.name, intake.etag, intake.raised)
        try:
            if _is_manifest(ctx, event):
                _on_manifest_blob(ctx, event)
                done.append(intake.key)
                watchers.clear()  # the manifest may have started or changed a watch
                continue
            if event.container not in watchers:
                watchers[event.container] = ctx.store.watching(event.container)
            arrivals += _arrivals_of(ctx, event, watchers[event.container])
            uploads.append(intake.key)
        except Exception:
            log.exception("inbox: event %s (%s/%s) not acted on yet", event.id, event.container, event.name)
    try:
        ctx.store.record_arrivals(arrivals)
    except Exception:
        log.exception("inbox: %d upload(s) not recorded yet", len(uploads))
        return done
    if arrivals:
        log.info("%d upload(s) recorded for job(s) %s", len(arrivals), ", ".join(sorted({a.job for a in arrivals})))
    return done + uploads


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

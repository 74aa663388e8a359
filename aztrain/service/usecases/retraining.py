"""Retraining on data arrival: a watched job's pending arrivals, and the window that launches a run.

The rules themselves are pure (`aztrain.domain.retrain.decide_window`, `checked_launch`); this module feeds them
what the stores say and acts on the decision, so `aztrain window` and the reconciler always agree.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from aztrain.domain.errors import NotFound
from aztrain.domain.identity import DEFAULT_TEAM
from aztrain.domain.layout import new_run_id
from aztrain.domain.records import Arrival, JobRecord
from aztrain.domain.retrain import Window, checked_launch, decide_window, snapshot_of
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service import faults
from aztrain.service.usecases import intake, progress
from aztrain.service.usecases.context import Context, read_decide_write

log = logging.getLogger(__name__)

#: Completed runs looked at for the newest end, which starts a retraining cooldown.
_RECENT = 5


def window(ctx: Context, job_name: str) -> Window:
    """The pending retraining window of a job: arrivals so far, when it fires, or why not."""
    job = _job(ctx, job_name)
    if not job.watch_prefix:
        return Window("idle", "the job does not retrain on data arrival", next="nothing: only a submit starts a run")
    return _decide(ctx, job)


def reconcile_windows(ctx: Context) -> None:
    """Act on every watching job's window (read from the `watches` index, not every job); failures are isolated."""
    for job in ctx.store.watching():
        try:
            _reconcile_window(ctx, job)
        except Exception:
            log.exception("reconcile: retraining window of job %s failed", job.name)


def _job(ctx: Context, name: str) -> JobRecord:
    job = ctx.store.get_job(name)
    if job is None:
        raise NotFound("job", name)
    return job


def _decide(ctx: Context, job: JobRecord, pending: list[Arrival] | None = None) -> Window:
    """The job's window (`pending`: its pending arrivals, if the caller has read them)."""
    completed = ctx.store.find_runs(job=job.name, states=(RunState.COMPLETED,), limit=_RECENT)
    assert job.spec.retrain is not None  # a job watches only when its manifest has a retrain section
    decision = decide_window(
        job.spec.retrain,
        ctx.store.pending_arrivals(job.name) if pending is None else pending,
        ctx.store.find_runs(job=job.name, states=ACTIVE_STATES),
        max((r.updated_at for r in completed), default=None),
        ctx.now(),
    )
    if decision.action != "launch":
        return decision
    # Only a window about to fire lists the data: it must not fire on nothing, nor on data a run already has.
    snapshot = snapshot_of(job.spec, ctx.data.list(job.spec.data.container, job.spec.data.prefix))
    trained = next((r.id for r in ctx.store.find_runs(job=job.name) if r.snapshot_id == snapshot.id), "")
    return checked_launch(decision, snapshot, trained)


def _reconcile_window(ctx: Context, job: JobRecord) -> None:
    pending = ctx.store.pending_arrivals(job.name)
    decision = _decide(ctx, job, pending)
    if decision.action not in ("launch", "skip"):
        return
    if decision.action == "skip":
        ctx.store.consume_arrivals(job.name, [a.key for a in pending], by=decision.served_by or decision.reason)
        return
    for run_id in decision.replace:
        progress.cancel(ctx, run_id, cause="retrain:replace")
    # The window is named by its oldest arrival: a crash before the arrivals are consumed
    # finds the same run id here next time instead of launching a second run.
    run_id = ctx.store.claim("window", f"{job.name}:{pending[0].key}", new_run_id(ctx.now()))
    faults.checkpoint("retraining.after-window-claim")
    run = ctx.store.get_run(run_id) or intake.record_run(
        ctx,
        Run.create(
            id=run_id,
            job=job.name,
            state=RunState.ACCEPTED,
            at=ctx.now(),
            trigger="data",
            cause=f"window:{pending[0].key}",
            source=f"{job.watch_container}/{pending[-1].blob} (+{len(pending) - 1} more)",
            spec=job.spec,
            manifest_hash=job.spec.content_hash,
            team=job.spec.team or DEFAULT_TEAM,  # a retraining run belongs to its job's team
            priority=job.spec.queue_priority or 0,
        ),
    )
    # The first step at once: a window's run takes its snapshot in the pass that fired it, over what it saw.
    run = progress.advance(ctx, run.id, held=run)
    ctx.store.consume_arrivals(job.name, [a.key for a in pending], by=run.id)
    _note_last_run(ctx, run)
    log.info("job %s: retraining run %s for %d new blob(s)", job.name, run.id, len(pending))


def _note_last_run(ctx: Context, run: Run) -> None:
    """The window's run is the job's latest, so resubmitting the same manifest finds it (and does not rerun it)."""

    def decide(job: JobRecord) -> JobRecord | None:
        same = run.spec is not None and run.spec.content_hash == job.spec.content_hash  # hashed now: any scheme
        current = same and job.last_run_id != run.id
        return replace(job, last_run_id=run.id) if current else None

    read_decide_write(lambda: _job(ctx, run.job), decide, ctx.store.put_job, what=f"job {run.job}")

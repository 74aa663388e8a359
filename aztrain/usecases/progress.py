"""Run progress: each step of a run taken from what the backend observes, cancel, and preemption.

Every function here is safe to call any time, from anywhere, any number of times: it reads the
run, decides one step from the run's state and the backend's observation, and writes it
conditionally (`read_decide_write`). The reconciler calls `advance` for every active run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aztrain import faults
from aztrain.errors import InvalidTransition
from aztrain.layout import backend_job_name, run_id_of, run_output_prefix, snapshot_blob
from aztrain.records import ClusterSpec, JobObservation, JobPhase, JobSubmission
from aztrain.retrain import Snapshot, covered, snapshot_of
from aztrain.runs import ACTIVE_STATES, Run, RunState, can_transition, state_for_phase
from aztrain.usecases import capacity, publishing, registry
from aztrain.usecases.context import Context, read_decide_write

log = logging.getLogger(__name__)


def advance(ctx: Context, run_id: str, *, held: Run | None = None) -> Run:
    """Take one step for a run from what the backend says now (`held`: the run as just stored, not read again)."""
    return update_run(ctx, run_id, lambda run: _next_step(ctx, run), held=held)


def advance_all(ctx: Context) -> None:
    """Advance every active run; one that fails is logged and does not stall the others."""
    for run in ctx.store.find_runs(states=ACTIVE_STATES):
        faults.checkpoint("progress.mid-reconcile")
        try:
            advanced = advance(ctx, run.id)
            if advanced.is_terminal:  # ended now, or before a crash that left it listed
                ctx.store.forget_active(advanced)
        except Exception:
            log.exception("reconcile: run %s could not advance", run.id)


def on_job_status(ctx: Context, backend_job_id: str, phase: JobPhase, *, cause: str) -> Run | None:
    """A backend status event (a hint: late or duplicated news is recorded as ignored, never applied)."""
    run = ctx.store.get_run(run_id_of(backend_job_id))
    target = state_for_phase(phase)
    if run is None or target is None or target is run.state or backend_job_id != run.backend_job_id:
        return run  # nothing new, or news of an attempt that has been superseded

    def decide(current: Run) -> Run | None:
        if current.backend_job_id != backend_job_id:  # resubmitted since the first read
            return None
        # The event carries no error or preemption flag: a failure is looked at once to learn why.
        seen = ctx.backend.observe(backend_job_id) if target is RunState.FAILED else JobObservation(phase, phase)
        return _follow(ctx, current, seen, cause=cause)

    return update_run(ctx, run.id, decide)


def cancel(ctx: Context, run_id: str, *, cause: str) -> Run:
    """Ask a run to stop. Idempotent for runs already stopping; `InvalidTransition` for finished ones."""

    def decide(run: Run) -> Run | None:
        if run.state in (RunState.CANCEL_REQUESTED, RunState.CANCELED):
            return None
        if run.is_terminal:
            raise InvalidTransition(run.id, run.state.value, "cancel")
        return run.moved(RunState.CANCEL_REQUESTED, cause=cause, at=ctx.now())

    run = update_run(ctx, run_id, decide)
    if run.backend_job_id:
        ctx.backend.cancel(run.backend_job_id)
    return advance(ctx, run.id)


def update_run(ctx: Context, run_id: str, decide: Callable[[Run], Run | None], *, held: Run | None = None) -> Run:
    """`read_decide_write` on one run; an applied move on a cluster also updates the cluster's record.

    Then the run's staged events are published (`publishing.drain`).
    """
    saved, wrote = read_decide_write(
        lambda: ctx.get_run(run_id), decide, ctx.store.save_run, what=f"run {run_id}", held=held
    )
    if wrote and saved.cluster and saved.last and saved.last.applied:
        capacity.sync_cluster(ctx, saved)
    return publishing.drain(ctx, saved)  # the reconciler drains what this cannot (`publishing.drain_pending`)


def submission_for(run: Run, spec: ClusterSpec, *, runs_container: str, attempt: int) -> JobSubmission:
    """What a backend is asked to run for one attempt of a run (also what `aztrain plan` shows)."""
    manifest = run.manifest
    return JobSubmission(
        name=backend_job_name(run.id, attempt),
        run_id=run.id,
        job=run.job,
        cluster=spec,
        entrypoint=manifest.trainer.entrypoint,
        args=dict(manifest.trainer.args),
        data_container=manifest.data.container,
        data_prefix=manifest.data.prefix,
        snapshot=snapshot_blob(run.snapshot_id),
        output_container=runs_container,
        output_prefix=run_output_prefix(run.job, run.id),
        max_runtime_seconds=manifest.compute.max_runtime,
        snapshot_id=run.snapshot_id,
        manifest_hash=run.manifest_hash,
        correlation=run.correlation,
    )


def _next_step(ctx: Context, run: Run) -> Run | None:
    now = ctx.now()
    if run.is_terminal:
        return None
    spec = ctx.backend.cluster_for(run.manifest.compute)
    if run.state is RunState.ACCEPTED:
        snapshot = _take_snapshot(ctx, run)
        if not snapshot.blobs:  # nothing to train on: fail before a single node is paid for
            data = run.manifest.data
            return run.moved(
                RunState.FAILED,
                cause="reconciler",
                at=now,
                error=f"no data: {data.container}/{data.prefix} holds no blobs the job selects; "
                "upload training data there (e.g. `aztrain upload`) and submit again",
            )
        if run.manifest.watches_data:  # a run of any trigger serves the uploads its snapshot holds
            ctx.store.consume_arrivals(run.job, covered(snapshot, ctx.store.pending_arrivals(run.job)), by=run.id)
        ctx.backend.ensure_cluster(spec)
        return run.moved(
            RunState.PROVISIONING,
            cause="reconciler",
            at=now,
            cluster=spec.name,
            snapshot_id=snapshot.id,
            detail=f"snapshot {snapshot.id}: {len(snapshot.blobs)} blob(s)",
        )
    if run.state is RunState.PROVISIONING:
        if ctx.backend.ensure_cluster(spec) < spec.nodes:
            return None
        job_id = _submit(ctx, run, spec, attempt=run.attempt)
        return run.moved(RunState.SUBMITTED, cause="reconciler", at=now, backend_job_id=job_id)
    if run.state is RunState.CANCEL_REQUESTED and not run.backend_job_id:
        return run.moved(RunState.CANCELED, cause="reconciler", at=now)
    seen = ctx.backend.observe(run.backend_job_id)
    target = state_for_phase(seen.phase)
    if target is None or target is run.state:
        return None
    return _follow(ctx, run, seen, cause=f"backend:{seen.status}")


def _submit(ctx: Context, run: Run, spec: ClusterSpec, *, attempt: int) -> str:
    submission = submission_for(run, spec, runs_container=ctx.settings.runs_container, attempt=attempt)
    job_id = ctx.backend.submit(submission)
    faults.checkpoint("progress.after-submit")
    return job_id


def _follow(ctx: Context, run: Run, seen: JobObservation, *, cause: str) -> Run:
    """Move a run to what its backend job reports; a preempted failure becomes the next attempt instead."""
    target = state_for_phase(seen.phase)
    assert target is not None  # callers pass only observations that move the run
    # Checked before submitting: a refused move (e.g. from CANCEL_REQUESTED) must not leave a job running.
    if (
        target is RunState.FAILED
        and seen.preempted
        and can_transition(run.state, RunState.SUBMITTED)
        and run.attempt < ctx.settings.max_preemption_attempts
    ):
        return _resubmit(ctx, run)
    changes: dict[str, Any] = {}
    if target is RunState.COMPLETED and can_transition(run.state, target):
        changes["metrics"] = registry.read_metrics(ctx, run)
        registry.register_model(ctx, run, changes["metrics"])
    if target is RunState.FAILED:
        changes["error"] = seen.error
    return run.moved(target, cause=cause, at=ctx.now(), **changes)


def _resubmit(ctx: Context, run: Run) -> Run:
    """Preempted: submit the next attempt under its own job name; it resumes from the run's checkpoints."""
    attempt = run.attempt + 1
    job_id = _submit(ctx, run, ctx.backend.cluster_for(run.manifest.compute), attempt=attempt)
    detail = f"attempt {run.attempt} preempted; attempt {attempt} resumes from checkpoints"
    return run.moved(
        RunState.SUBMITTED, cause="preempted", at=ctx.now(), detail=detail, attempt=attempt, backend_job_id=job_id
    )


def _take_snapshot(ctx: Context, run: Run) -> Snapshot:
    """List the data now and store the list, immutably, under its content hash."""
    data = run.manifest.data
    snapshot = snapshot_of(run.manifest, ctx.data.list(data.container, data.prefix))
    document = json.dumps(snapshot.to_json()).encode()
    ctx.data.write(ctx.settings.runs_container, snapshot_blob(snapshot.id), document)
    return snapshot

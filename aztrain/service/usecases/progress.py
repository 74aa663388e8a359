"""Run progress: each step of a run taken from what the backend observes, cancel, and preemption.

Every function here is safe to call any time, from anywhere, any number of times: it reads the
run, decides a step from the run's state and the backend's observation, and writes it
conditionally (`read_decide_write`). The reconciler's `advance_all` reads every active run's copy
in the index at once and advances only those whose step could be due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from aztrain.domain.errors import InvalidTransition
from aztrain.domain.identity import DEFAULT_TEAM, Principal
from aztrain.domain.layout import backend_job_name, run_id_of, run_output_prefix, snapshot_blob
from aztrain.domain.records import ClusterSpec, JobObservation, JobPhase, JobSubmission
from aztrain.domain.retrain import covered
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState, can_transition, state_for_phase
from aztrain.service import faults
from aztrain.service.usecases import capacity, costing, intake, publishing, registry
from aztrain.service.usecases.context import Context, read_decide_write
from aztrain.service.usecases.looks import Looks

log = logging.getLogger(__name__)


#: Steps one `advance` may take in a row: ACCEPTED (or an admitted QUEUED) → PROVISIONING → SUBMITTED when
#: the nodes are already up.
MAX_STEPS = 3


def advance(ctx: Context, run_id: str, *, held: Run | None = None) -> Run:
    """Take the steps due for a run from what the backend says now (`held`: the run as just stored, not read again).

    A step whose next one may be due at once (PROVISIONING, when the nodes are up) is followed by it,
    up to `MAX_STEPS`; the run's events are published once, after the last.
    """
    return _advance(ctx, run_id, held=held, looks=Looks(ctx))[0]


def advance_all(ctx: Context) -> list[Run]:
    """Advance every active run whose step could be due; returns the active runs as the pass left them.

    The runs are read once, as their copies in the active index, and a step is judged on the copy
    first (`_due`): only a run that could move costs a read and a write. A copy may be behind its
    run, never ahead, so a step it shows due is decided again on the run itself; a copy found behind
    is refreshed. One run that fails is logged and does not stall the others.
    """
    copies = ctx.store.find_runs(states=ACTIVE_STATES)
    looks, after = Looks(ctx, active={c.id: c for c in copies}), []
    for copy in copies:
        faults.checkpoint("progress.mid-reconcile")
        try:
            run = copy
            if _due(ctx, copy, looks):
                held = intake.recorded(ctx, copy) if copy.seq == 1 else None
                run, wrote = _advance(ctx, copy.id, held=held, looks=looks)
                if not wrote and run.seq != copy.seq:  # behind: a crash or a race between its two writes
                    ctx.store.refresh_active(run)
                looks.moved(run)
            if not run.is_terminal:
                after.append(run)
        except Exception:  # left out of `after`: its state is unknown (a scale-down reads the index again)
            log.exception("reconcile: run %s could not advance", copy.id)
    return after


def _due(ctx: Context, copy: Run, looks: Looks) -> bool:
    """Whether a step could be due for a run, judged on its copy in the index: no storage read."""
    if copy.state is RunState.ACCEPTED or (copy.state is RunState.CANCEL_REQUESTED and not copy.backend_job_id):
        return True
    if copy.awaiting_admission:  # admitted now, or waiting for another reason
        return looks.waiting_reason(copy) != copy.waiting_reason
    if copy.state is RunState.PROVISIONING:
        spec = ctx.backend.cluster_for(copy.manifest.compute)
        return looks.ready(spec) >= spec.nodes
    return _moves(copy, looks.observe(copy.backend_job_id))


def _moves(run: Run, seen: JobObservation) -> bool:
    """Whether an observation of the run's job says something new (a preempted failure does: FAILED)."""
    target = state_for_phase(seen.phase)
    return target is not None and target is not run.state


def _advance(ctx: Context, run_id: str, *, held: Run | None, looks: Looks) -> tuple[Run, bool]:
    """`advance`, saying whether it wrote."""

    def step(current: Run) -> Run | None:
        return _next_step(ctx, current, looks)

    run, wrote = _write_step(ctx, run_id, step, held=held, sized=looks.sized)
    wrote_any = wrote
    for _ in range(MAX_STEPS - 1):
        if not wrote or run.state is not RunState.PROVISIONING:  # only a fresh PROVISIONING may be due at once
            break
        run, wrote = _write_step(ctx, run_id, step, held=run, sized=looks.sized)  # just stored: not read again
        wrote_any |= wrote
    return publishing.drain(ctx, run), wrote_any


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


def cancel(ctx: Context, run_id: str, *, cause: str, by: Principal | None = None) -> Run:
    """Ask a run to stop. Idempotent for runs already stopping; `InvalidTransition` for finished ones.

    `by`: the signed-in caller, `Forbidden` unless an admin or a submitter in the run's team.
    """

    def decide(run: Run) -> Run | None:
        if by is not None:
            by.require_canceller(run.team or DEFAULT_TEAM)
        if run.state in (RunState.CANCEL_REQUESTED, RunState.CANCELED):
            return None
        if run.is_terminal:
            raise InvalidTransition(run.id, run.state.value, "cancel")
        return run.moved(RunState.CANCEL_REQUESTED, cause=cause, at=ctx.now())

    run = update_run(ctx, run_id, decide)
    if run.backend_job_id:
        ctx.backend.cancel(run.backend_job_id)
    return advance(ctx, run.id)


def update_run(ctx: Context, run_id: str, decide: Callable[[Run], Run | None]) -> Run:
    """`read_decide_write` on one run (see `_write_step`), then its staged events are published (`publishing.drain`)."""
    saved, _ = _write_step(ctx, run_id, decide)
    return publishing.drain(ctx, saved)  # the reconciler drains what this cannot (`publishing.drain_pending`)


def _write_step(
    ctx: Context,
    run_id: str,
    decide: Callable[[Run], Run | None],
    *,
    held: Run | None = None,
    sized: dict[str, int] | None = None,
) -> tuple[Run, bool]:
    """`read_decide_write` on one run; an applied move on a cluster also updates the cluster's record."""
    saved, wrote = read_decide_write(
        lambda: ctx.get_run(run_id), decide, ctx.store.save_run, what=f"run {run_id}", held=held
    )
    if wrote and saved.cluster and saved.last and saved.last.applied:
        capacity.sync_cluster(ctx, saved, sized=sized)
    return saved, wrote


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
        distribution=manifest.trainer.distribution,
        code_snapshot=manifest.trainer.code or "",
        environment=manifest.trainer.environment.model_dump(exclude_none=True) if manifest.trainer.environment else {},
    )


def _next_step(ctx: Context, run: Run, looks: Looks) -> Run | None:
    now = ctx.now()
    if run.is_terminal:
        return None
    spec = ctx.backend.cluster_for(run.manifest.compute)
    if run.state is RunState.ACCEPTED:
        snapshot = looks.snapshot(run)
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
        taken = f"snapshot {snapshot.id}: {len(snapshot.blobs)} blob(s)"
        reason = looks.waiting_reason(run)
        if reason:
            return run.moved(
                RunState.QUEUED,
                cause="admission",
                at=now,
                snapshot_id=snapshot.id,
                waiting_reason=reason,
                detail=f"{taken}; waiting: {reason}",
            )
        looks.ready(spec)  # starts growing the cluster
        detail = "; ".join(filter(None, [taken, _placement(spec)]))
        return run.moved(
            RunState.PROVISIONING,
            cause="reconciler",
            at=now,
            snapshot_id=snapshot.id,
            detail=detail,
            **_placed(ctx, run, spec, now),
        )
    if run.awaiting_admission:
        reason = looks.waiting_reason(run)
        if reason:  # still waiting: only a changed reason is written (no transition)
            return None if reason == run.waiting_reason else replace(run, waiting_reason=reason, updated_at=now)
        looks.ready(spec)
        detail = "; ".join(filter(None, ["admitted", _placement(spec)]))
        return run.moved(
            RunState.PROVISIONING, cause="admission", at=now, detail=detail, **_placed(ctx, run, spec, now)
        )
    if run.state is RunState.PROVISIONING:
        if looks.ready(spec, again=True) < spec.nodes:
            return None
        job_id = _submit(ctx, run, spec, attempt=run.attempt)
        return run.moved(RunState.SUBMITTED, cause="reconciler", at=now, backend_job_id=job_id)
    if run.state is RunState.CANCEL_REQUESTED and not run.backend_job_id:
        return run.moved(RunState.CANCELED, cause="reconciler", at=now)
    observed = looks.observe(run.backend_job_id)
    return _follow(ctx, run, observed, cause=f"backend:{observed.status}") if _moves(run, observed) else None


def _placed(ctx: Context, run: Run, spec: ClusterSpec, now: datetime) -> dict[str, Any]:
    """What placing a run records: its `cluster` (none for serverless nodes: no cluster row, no scale-down),
    and when and at what rate billing starts (its nodes are asked for now)."""
    cluster = "" if spec.serverless else spec.name
    return {"cluster": cluster, "placed_at": now, "rate": costing.rate_for(ctx, run.manifest.compute)}


def _placement(spec: ClusterSpec) -> str:
    """Where serverless nodes come from, in the run's history ('' for a cluster: its name is the run's `cluster`)."""
    if spec.serverless:
        return f"serverless: {spec.nodes} x {spec.vm_size} for this run alone, released when it ends; no cluster"
    return ""


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

"""Intake: manifests become jobs and runs; data uploads become arrivals for the jobs that watch them.

A manifest (an HTTP body or a blob under `manifests/`) is parsed once at the edge; from here on the
core works with the typed `JobManifest`. The same manifest content (by hash)
maps to one run while that run is active or COMPLETED (after FAILED or CANCELED a resubmit starts a new
one), and a malformed one becomes a REJECTED run carrying the error, so it is visible and never retried.
A watching job whose prefix holds no data yet starts no run: it is registered, and its first upload
opens a retraining window. Intake only records: a new run is stored ACCEPTED, and the reconciler
takes it from there (`progress.advance_all`).

Every run belongs to a team and records who submitted it: an HTTP submit's signed-in user and the
team the manifest names (or their only team); a dropped manifest's folder (`manifests/<team>/...`,
the default team directly under `manifests/`). The team is written into the job's manifest, so a
retraining run belongs to its job's team, and a job name belongs to one team.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath

from aztrain.domain.documents import peek_name
from aztrain.domain.errors import ConcurrencyError, ManifestError
from aztrain.domain.identity import Principal
from aztrain.domain.layout import new_run_id
from aztrain.domain.manifest import JobManifest, parse_manifest
from aztrain.domain.records import JobRecord
from aztrain.domain.retrain import snapshot_of
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.domain.teams import dropped_team, shown_team
from aztrain.service import faults
from aztrain.service.code_snapshots import check_code
from aztrain.service.usecases import admission, publishing, teamgates
from aztrain.service.usecases.context import SAVE_ATTEMPTS, Context

log = logging.getLogger(__name__)

#: Runs whose identical manifest, submitted again, starts a new run rather than returning them.
RETRIED = frozenset({RunState.FAILED, RunState.CANCELED})


def duplicate(run: Run) -> str:
    """Why an identical manifest returned `run`, naming the exact way to run it again."""
    return (
        f"identical manifest: run {run.id} is {run.state.value}; to run it again, "
        "submit with --force (aztrain submit --force) or ?force=true (POST /api/jobs?force=true)"
    )


def waiting_for_data(manifest: JobManifest) -> str:
    """Why a watching job without data started no run, and what starts one."""
    data = manifest.data
    return (
        f"job {manifest.name} is registered and waits for data: {data.container}/{data.prefix} holds no blobs "
        f"it selects yet; the first upload there opens a retraining window (aztrain window {manifest.name})"
    )


@dataclass(frozen=True)
class Submitted:
    """What a submission led to. `created` is False when an existing run (or none) was returned.

    `run` is None only for a watching job whose prefix holds no data yet (`waiting`): the job and its
    watch are registered, and the first upload opens its retraining window.
    """

    run: Run | None
    created: bool
    reason: str = ""
    waiting_job: str = ""  # the job registered without a run

    @property
    def waiting(self) -> bool:
        return self.run is None

    @property
    def job(self) -> str:
        return self.run.job if self.run else self.waiting_job


def submit(
    ctx: Context,
    manifest_text: str | bytes,
    *,
    trigger: str,
    cause: str,
    source: str,
    force: bool = False,
    run_id: str | None = None,
    correlation: str = "",
    by: Principal | None = None,
) -> Submitted:
    """Accept a manifest and start a run of it (see the module docstring for the rules).

    `correlation` (default: `cause`) follows the run into its job's tags, its log and its events.
    `by`: the signed-in submitter (`Forbidden` if they may not submit for the manifest's team);
    None for a manifest dropped into storage, which belongs to the team of its folder.
    """
    try:
        # The backend's placement is checked with the schema, so one answer names every problem.
        parsed = parse_manifest(
            manifest_text,
            source=source,
            max_bytes=ctx.settings.max_manifest_bytes,
            compute_check=ctx.backend.cluster_for,
        )
        team = by.submitting_team(parsed.team) if by else dropped_team(source, _drop_prefix(ctx), parsed.team)
        manifest = parsed.model_copy(update={"team": team})  # the job's team: its retraining runs' too
        check_code(ctx.data, ctx.settings.runs_container, manifest)  # its entrypoint exists before anything runs
        admission.refuse(ctx, manifest)  # a wait that could never end is a refusal now
    except ManifestError as exc:
        return _reject(
            ctx,
            exc,
            manifest_text,
            trigger=trigger,
            cause=cause,
            source=source,
            run_id=run_id,
            correlation=correlation,
            team=by.teams[0] if by and len(by.teams) == 1 else shown_team(source, _drop_prefix(ctx)),
            by=by,
        )
    given = run_id is not None
    run_id = run_id or new_run_id(ctx.now())
    mine, since, waiting = run_id, ctx.now(), None
    for _ in range(SAVE_ATTEMPTS):
        job, run_id = ctx.store.get_job(manifest.name), mine
        # Ids sort newest first: a given id no newer than the job's latest run may be a redelivery
        # (of an event, or a request) that made its run already. A fresh one needs no read.
        existing = ctx.store.get_run(mine) if given and job and job.last_run_id and mine >= job.last_run_id else None
        if existing:
            return Submitted(existing, created=False, reason="already processed")
        if job and job.spec.team and job.spec.team != team:
            return _reject(
                ctx,
                ManifestError.at("name", f"job {manifest.name} belongs to team {job.spec.team}; choose another name"),
                manifest_text,
                trigger=trigger,
                cause=cause,
                source=source,
                run_id=run_id,
                correlation=correlation,
                team=team,
                by=by,
            )
        job_is_newer = job is not None and job.spec.content_hash != manifest.content_hash and mine > job.last_run_id
        if given and job and job.last_run_id and job_is_newer:
            # Raised before the job's latest run: a late delivery of an older manifest (queue messages
            # come in any order). It gets its run; the job keeps the newer manifest.
            break
        # Hashed again from the stored manifest: a hash stored by an earlier scheme never makes it look new.
        if job and job.spec.content_hash == manifest.content_hash and job.last_run_id and not force:
            last = ctx.store.get_run(job.last_run_id)
            # The job's latest run, unless it FAILED or was CANCELED and no other run of this manifest is active.
            kept = last if last is None or last.state not in RETRIED else _active_run(ctx, manifest)
            if kept:
                return Submitted(kept, created=False, reason=duplicate(kept))
            if last is None:
                # Its submit is still in flight, or stopped between the job and the run rows:
                # carry on as that run, so the two meet on one run row instead of making two.
                run_id = job.last_run_id
        if waiting is None:  # listed once, after `since`: an upload from then on is an arrival of the watch
            waiting = manifest.watches_data and not _selected(ctx, manifest)
        try:
            _save_job(ctx, manifest, job, (job.last_run_id if job else "") if waiting else run_id, since)
            break
        except ConcurrencyError:  # a concurrent submit of this job won: read it again and decide again
            continue
    else:
        raise ConcurrencyError(f"job {manifest.name}")
    if waiting:
        log.info("job %s registered; waiting for data under its watch", manifest.name)
        return Submitted(None, created=False, reason=waiting_for_data(manifest), waiting_job=manifest.name)
    faults.checkpoint("intake.after-job")
    run = Run.create(
        id=run_id,
        job=manifest.name,
        state=RunState.ACCEPTED,
        at=ctx.now(),
        trigger=trigger,
        cause=cause,
        correlation=correlation,
        source=source,
        spec=manifest,
        manifest_hash=manifest.content_hash,
        team=team,
        submitted_by=by.user if by else "",
        priority=teamgates.priority_for(ctx, manifest),
    )
    created = run_id == mine
    stored = record_run(ctx, run)
    return Submitted(stored, created=created, reason="" if created else duplicate(stored))


def _active_run(ctx: Context, manifest: JobManifest) -> Run | None:
    """A run of this manifest that is still active (one forced beside it may have been the last to fail)."""
    active = ctx.store.find_runs(job=manifest.name, states=ACTIVE_STATES)
    return next((r for r in active if r.spec and r.spec.content_hash == manifest.content_hash), None)


def _selected(ctx: Context, manifest: JobManifest) -> bool:
    """Does the manifest's data prefix hold any blob it would train on?"""
    data = manifest.data
    return bool(snapshot_of(manifest, ctx.data.list(data.container, data.prefix)).blobs)


def record_run(ctx: Context, run: Run) -> Run:
    """Store a new run, or return the one a concurrent call stored under its id.

    Nothing more: a handler's cost is the writes that make the run durable (its job row, then its
    first history row, its copy in the active index and its own row), and every step from ACCEPTED
    is the reconciler's, which also publishes the run's events. Storms are bounded by those writes.
    """
    try:
        return ctx.store.add_run(run)
    except ConcurrencyError:
        return ctx.store.get_run(run.id) or run


def recorded(ctx: Context, copy: Run) -> Run:
    """A new run as its own row holds it, from its copy in the active index.

    The copy is written first so that no run is ever missed: a copy without a run row is a creation
    still in flight (which this write then meets) or one that crashed, whose caller may never retry:
    it is finished here.
    """
    return ctx.store.get_run(copy.id) or record_run(ctx, copy)


def _reject(
    ctx: Context,
    exc: ManifestError,
    text: str | bytes,
    *,
    trigger: str,
    cause: str,
    source: str,
    run_id: str | None,
    correlation: str,
    team: str,
    by: Principal | None,
) -> Submitted:
    log.warning("rejected manifest from %s: %s", source, exc)
    run = Run.create(
        id=run_id,
        job=_job_name_hint(text, source, ctx.settings.max_manifest_bytes),
        state=RunState.REJECTED,
        at=ctx.now(),
        trigger=trigger,
        cause=cause,
        correlation=correlation,
        source=source,
        error=str(exc),
        problems=tuple(exc.problems),
        team=team,
        submitted_by=by.user if by else "",
    )
    try:
        return Submitted(publishing.drain(ctx, ctx.store.add_run(run)), created=True)
    except ConcurrencyError:  # redelivered: the rejection is already recorded
        return Submitted(ctx.store.get_run(run.id) or run, created=False, reason="already processed")


def _drop_prefix(ctx: Context) -> str:
    return f"{ctx.settings.jobs_container}/{ctx.settings.manifests_prefix}"


def _save_job(ctx: Context, manifest: JobManifest, job: JobRecord | None, run_id: str, since: datetime) -> None:
    watch = (manifest.data.container, manifest.data.prefix) if manifest.watches_data else ("", "")
    same_watch = job is not None and (job.watch_container, job.watch_prefix) == watch
    record = JobRecord(
        name=manifest.name,
        spec=manifest,
        manifest_hash=manifest.content_hash,
        updated_at=ctx.now(),
        watch_container=watch[0],
        watch_prefix=watch[1],
        watch_since=job.watch_since if job and same_watch else since,
        last_run_id=run_id,
        etag=job.etag if job else None,
    )
    ctx.store.put_job(record)


def _job_name_hint(text: str | bytes, source: str, max_bytes: int) -> str:
    """Best-effort job name for a rejected manifest: its `name` if readable, else the file's stem."""
    candidate = peek_name(text, max_bytes=max_bytes) or PurePosixPath(source).stem
    # Table Storage keys must not contain /, \, #, ? or control characters.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", candidate)[:63]
    return cleaned or "unknown"

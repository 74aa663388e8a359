"""Use cases of the control plane. Framework-free: triggers and the CLI call these.

Every use case is idempotent and quick. Handlers record intent and take one
cheap step; the reconciler (`reconcile`) drives runs forward from backend
state and is the backstop for every lost or late event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

from aztrain.errors import BackendError, ConcurrencyError, InvalidTransition, ManifestError, NotFound
from aztrain.manifest import JobManifest, RegistrySpec, parse_manifest
from aztrain.ports import (
    Arrival,
    ClusterRecord,
    ClusterSpec,
    ComputeBackend,
    DataStore,
    JobRecord,
    JobSubmission,
    ModelVersion,
    RunStore,
)
from aztrain.retrain import Snapshot, Window, decide_window, judge_promotion, snapshot_of, watches
from aztrain.runs import (
    ACTIVE_STATES,
    RUN_ID_PATTERN,
    Run,
    RunState,
    can_transition,
    new_run_id,
    state_for_backend_status,
)
from aztrain.settings import Settings

log = logging.getLogger(__name__)

_SAVE_ATTEMPTS = 5
#: Backend job names are derived from run ids, so status events name their run.
BACKEND_JOB_PREFIX = "aztrain-"
#: Runs that used a cluster; the newest end of these starts a retraining cooldown.
_RAN = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELED)
_RECENT = 5


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
        return cls(id=event_id, container=head.removeprefix(prefix), name=name, etag=etag, time=time)


@dataclass(frozen=True)
class Submitted:
    """What a submission led to. `created` is False when an existing run was returned."""

    run: Run
    created: bool
    reason: str = ""


class ControlPlane:
    """The service layer: jobs in, runs out, clusters back to zero."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: RunStore,
        data: DataStore,
        backend: ComputeBackend,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.data = data
        self.backend = backend
        self.now = now

    # ----------------------------------------------------------------- submit
    def submit(
        self,
        manifest_text: str | bytes,
        *,
        trigger: str,
        cause: str,
        source: str,
        force: bool = False,
        run_id: str | None = None,
    ) -> Submitted:
        """Accept a manifest and start a run of it.

        The same manifest content (by hash) maps to one run: resubmitting it
        returns that run unless `force` is set. A malformed manifest becomes a
        REJECTED run carrying the error, so it is visible and never retried.
        """
        try:
            manifest = parse_manifest(manifest_text, source=source, max_bytes=self.settings.max_manifest_bytes)
            self.backend.cluster_for(manifest.compute.model_dump())
        except ManifestError as exc:
            return Submitted(self._reject(exc, manifest_text, trigger, cause, source, run_id), created=True)
        run_id = run_id or new_run_id(self.now())
        existing = self.store.get_run(run_id)
        if existing:  # a redelivered event that already made its run
            return Submitted(existing, created=False, reason="already processed")
        duplicate = "identical manifest already submitted; use force to rerun"
        mine = run_id
        for _ in range(_SAVE_ATTEMPTS):
            job = self.store.get_job(manifest.name)
            if job and job.manifest_hash == manifest.content_hash and job.last_run_id and not force:
                last = self.store.get_run(job.last_run_id)
                if last and last.id != run_id:
                    return Submitted(last, created=False, reason=duplicate)
                # Its submit is still in flight, or stopped between the job and the run rows:
                # carry on as that run, so the two meet on one run row instead of making two.
                run_id = job.last_run_id
            try:
                self._save_job(manifest, job, run_id)
                break
            except ConcurrencyError:  # a concurrent submit of this job won: read it again and decide again
                continue
        else:
            raise ConcurrencyError(f"job {manifest.name}")
        run = Run.create(
            id=run_id,
            job=manifest.name,
            state=RunState.ACCEPTED,
            at=self.now(),
            trigger=trigger,
            cause=cause,
            source=source,
            manifest=manifest.normalised(),
            manifest_hash=manifest.content_hash,
        )
        created = run_id == mine
        return Submitted(self._add_and_advance(run), created=created, reason="" if created else duplicate)

    def _reject(
        self, exc: ManifestError, text: str | bytes, trigger: str, cause: str, source: str, run_id: str | None
    ) -> Run:
        log.warning("rejected manifest from %s: %s", source, exc)
        run = Run.create(
            id=run_id,
            job=_job_name_hint(text, source),
            state=RunState.REJECTED,
            at=self.now(),
            trigger=trigger,
            cause=cause,
            source=source,
            error=str(exc),
        )
        try:
            return self.store.add_run(run)
        except ConcurrencyError:  # redelivered: the rejection is already recorded
            return self.store.get_run(run.id) or run

    def _save_job(self, manifest: JobManifest, job: JobRecord | None, run_id: str) -> None:
        watching = manifest.watches_data
        watch = (manifest.data.container, manifest.data.prefix) if watching else ("", "")
        same_watch = job is not None and (job.watch_container, job.watch_prefix) == watch
        record = JobRecord(
            name=manifest.name,
            manifest=manifest.normalised(),
            manifest_hash=manifest.content_hash,
            updated_at=self.now(),
            watch_container=watch[0],
            watch_prefix=watch[1],
            watch_since=job.watch_since if job and same_watch else self.now(),
            last_run_id=run_id,
            last_trigger_at=self.now(),
            etag=job.etag if job else None,
        )
        self.store.put_job(record)

    def _add_and_advance(self, run: Run) -> Run:
        try:
            run = self.store.add_run(run)
        except ConcurrencyError:
            return self.store.get_run(run.id) or run
        # One cheap step now so users see progress at once; the reconciler does the rest.
        return self.advance(run.id)

    # ------------------------------------------------------------ blob events
    def on_blob_created(self, event: BlobEvent) -> list[Run]:
        """A blob landed: a manifest starts its job; data is recorded as an arrival for each job watching it."""
        if event.container == self.settings.jobs_container and event.name.startswith(self.settings.manifests_prefix):
            return [self._on_manifest_blob(event)]
        if event.container in (self.settings.jobs_container, self.settings.runs_container):
            return []  # the control plane's own writes never trigger anything
        return self._on_data_blob(event)

    def _on_manifest_blob(self, event: BlobEvent) -> Run:
        run_id = self.store.claim("blobcreated", event.id, new_run_id(self.now()))
        source = f"{event.container}/{event.name}"
        try:
            text = self.data.read(event.container, event.name, max_bytes=self.settings.max_manifest_bytes)
        except NotFound:
            text = b""  # deleted before we read it: recorded as rejected, not retried forever
        return self.submit(text, trigger="manifest", cause=event.id, source=source, run_id=run_id).run

    def _on_data_blob(self, event: BlobEvent) -> list[Run]:
        """Record the upload for every job watching it. Launching is the reconciler's call (`_reconcile_window`)."""
        key = hashlib.sha256(f"{event.container}/{event.name}\n{event.etag or event.id}".encode()).hexdigest()[:32]
        for job in self.store.list_jobs():
            if not job.watch_prefix or not watches(job.manifest, event.container, event.name):
                continue
            if event.time and job.watch_since and event.time < job.watch_since:
                continue  # uploaded before the watch began: the job's first run reads it anyway
            self.store.record_arrival(Arrival(job=job.name, key=key, blob=event.name, at=self.now()))
            log.info("data %s/%s recorded for job %s", event.container, event.name, job.name)
        return []

    def window(self, job_name: str) -> Window:
        """The pending retraining window of a job: arrivals so far, when it fires, or why not."""
        job = self.store.get_job(job_name)
        if job is None:
            raise NotFound("job", job_name)
        if not job.watch_prefix:
            return Window("idle", "the job does not retrain on data arrival")
        return self._decide_window(job)

    def _decide_window(self, job: JobRecord) -> Window:
        ended = self.store.find_runs(job=job.name, states=_RAN, limit=_RECENT)
        return decide_window(
            job.manifest["retrain"],
            self.store.pending_arrivals(job.name),
            self.store.find_runs(job=job.name, states=ACTIVE_STATES),
            max((r.updated_at for r in ended), default=None),
            self.now(),
        )

    def _reconcile_window(self, job: JobRecord) -> None:
        window = self._decide_window(job)
        if window.action not in ("launch", "skip"):
            return
        pending = self.store.pending_arrivals(job.name)
        if window.action == "skip":
            self.store.consume_arrivals(job.name, [a.key for a in pending], by=window.reason)
            return
        for run_id in window.replace:
            self.cancel(run_id, cause="retrain:replace")
        # The window is named by its oldest arrival: a crash before the arrivals are consumed
        # finds the same run id here next time instead of launching a second run.
        run_id = self.store.claim("window", f"{job.name}:{pending[0].key}", new_run_id(self.now()))
        run = self.store.get_run(run_id) or self._add_and_advance(
            Run.create(
                id=run_id,
                job=job.name,
                state=RunState.ACCEPTED,
                at=self.now(),
                trigger="data",
                cause=f"window:{pending[0].key}",
                source=f"{job.watch_container}/{pending[-1].blob} (+{len(pending) - 1} more)",
                manifest=job.manifest,
                manifest_hash=job.manifest_hash,
            )
        )
        self.store.consume_arrivals(job.name, [a.key for a in pending], by=run.id)
        log.info("job %s: retraining run %s for %d new blob(s)", job.name, run.id, len(pending))

    # -------------------------------------------------------- status & cancel
    def on_run_status(self, backend_job_id: str, status: str, *, cause: str) -> Run | None:
        """A backend status event. Late or duplicated events are recorded as ignored, never applied."""
        run = self.store.get_run(run_id_of(backend_job_id))
        try:
            target = state_for_backend_status(status)
        except KeyError:  # a status this version does not know: polling will tell the truth
            log.warning("unknown backend status %r for %s; ignored", status, backend_job_id)
            return run
        if run is None or target is None or target is run.state or backend_job_id != run.backend_job_id:
            return run  # nothing new, or news of an attempt that has been superseded

        def decide(current: Run) -> Run | None:
            if current.backend_job_id != backend_job_id:  # resubmitted since the first read
                return None
            return self._follow(current, target, cause=cause)

        return self._update(run.id, decide)

    def cancel(self, run_id: str, *, cause: str) -> Run:
        """Ask a run to stop. Idempotent for runs already stopping; `InvalidTransition` for finished ones."""

        def decide(run: Run) -> Run | None:
            if run.state in (RunState.CANCEL_REQUESTED, RunState.CANCELED):
                return None
            if run.is_terminal:
                raise InvalidTransition(run.id, run.state.value, "cancel")
            return run.moved(RunState.CANCEL_REQUESTED, cause=cause, at=self.now())

        run = self._update(run_id, decide)
        if run.backend_job_id:
            self.backend.cancel(run.backend_job_id)
        return self.advance(run.id)

    def get_run(self, run_id: str) -> Run:
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound("run", run_id)
        return run

    # ---------------------------------------------------------------- advance
    def advance(self, run_id: str) -> Run:
        """Take one step for a run from what the backend says now. Safe to call any time, from anywhere."""
        return self._update(run_id, self._next_step)

    def _next_step(self, run: Run) -> Run | None:
        now = self.now()
        if run.is_terminal:
            return None
        spec = self.backend.cluster_for(run.manifest["compute"])
        if run.state is RunState.ACCEPTED:
            snapshot = self._take_snapshot(run)
            self.backend.ensure_cluster(spec)
            return run.moved(
                RunState.PROVISIONING,
                cause="reconciler",
                at=now,
                cluster=spec.name,
                snapshot_id=snapshot.id,
                detail=f"snapshot {snapshot.id}: {len(snapshot.blobs)} blob(s)",
            )
        if run.state is RunState.PROVISIONING:
            ready = self.backend.ensure_cluster(spec)
            if ready < spec.nodes:
                return None
            job_id = self._submit(run, spec, attempt=run.attempt)
            return run.moved(RunState.SUBMITTED, cause="reconciler", at=now, backend_job_id=job_id)
        if run.state is RunState.CANCEL_REQUESTED and not run.backend_job_id:
            return run.moved(RunState.CANCELED, cause="reconciler", at=now)
        status = self.backend.job_status(run.backend_job_id)
        target = state_for_backend_status(status)
        if target is None or target is run.state:
            return None
        return self._follow(run, target, cause=f"backend:{status}")

    def _submit(self, run: Run, spec: ClusterSpec, *, attempt: int) -> str:
        submission = submission_for(run, spec, runs_container=self.settings.runs_container, attempt=attempt)
        return self.backend.submit(submission)

    def _follow(self, run: Run, target: RunState, *, cause: str) -> Run:
        """Move a run to what its backend job reports; a preempted failure becomes the next attempt instead."""
        if target is RunState.FAILED and self._resubmittable(run):
            return self._resubmit(run, self.backend.cluster_for(run.manifest["compute"]))
        return self._moved_to(run, target, cause=cause)

    def _resubmittable(self, run: Run) -> bool:
        # Checked before submitting: a refused move (e.g. from CANCEL_REQUESTED) must not leave a job running.
        return (
            can_transition(run.state, RunState.SUBMITTED)
            and run.attempt < self.settings.max_preemption_attempts
            and self.backend.is_preempted(run.backend_job_id)
        )

    def _resubmit(self, run: Run, spec: ClusterSpec) -> Run:
        """Preempted: submit the next attempt under its own job name; it resumes from the run's checkpoints."""
        attempt = run.attempt + 1
        job_id = self._submit(run, spec, attempt=attempt)
        detail = f"attempt {run.attempt} preempted; attempt {attempt} resumes from checkpoints"
        return run.moved(
            RunState.SUBMITTED, cause="preempted", at=self.now(), detail=detail, attempt=attempt, backend_job_id=job_id
        )

    def _take_snapshot(self, run: Run) -> Snapshot:
        """List the data now and store the list, immutably, under its content hash."""
        data = run.manifest["data"]
        snapshot = snapshot_of(run.manifest, self.data.list(data["container"], data["prefix"]))
        document = json.dumps(snapshot.to_json()).encode()
        self.data.write(self.settings.runs_container, snapshot_blob(snapshot.id), document)
        return snapshot

    def snapshot(self, snapshot_id: str) -> Snapshot:
        try:
            raw = self.data.read(self.settings.runs_container, snapshot_blob(snapshot_id))
        except NotFound:
            raise NotFound("snapshot", snapshot_id) from None
        return Snapshot.from_json(json.loads(raw))

    def _moved_to(self, run: Run, target: RunState, *, cause: str) -> Run:
        changes: dict[str, Any] = {}
        if target is RunState.COMPLETED:
            changes["metrics"] = self._read_metrics(run)
            self._register_model(run, changes["metrics"])
        if target is RunState.FAILED and run.backend_job_id:
            changes["error"] = self.backend.job_error(run.backend_job_id)
        return run.moved(target, cause=cause, at=self.now(), **changes)

    def _register_model(self, run: Run, metrics: dict[str, Any]) -> ModelVersion:
        """Register the run's model as the job's next version (once per run) and judge its promotion."""
        for _ in range(_SAVE_ATTEMPTS):
            versions = self.store.model_versions(run.job)
            mine = next((v for v in versions if v.run_id == run.id), None)
            if mine:  # registered already (a repeated completion): publishing again is harmless
                self._publish(mine)
                return mine
            current = next((v for v in reversed(versions) if v.promoted), None)
            gate = RegistrySpec.model_validate(run.manifest.get("registry") or {}).gate()
            promoted, verdict = judge_promotion(gate, metrics, current)
            version = ModelVersion(
                name=run.job,
                version=(versions[-1].version if versions else 0) + 1,
                run_id=run.id,
                snapshot_id=run.snapshot_id,
                manifest_hash=run.manifest_hash,
                artifact=f"{self.settings.runs_container}/{run_output_prefix(run)}outputs/model.pt",
                metrics=metrics,
                registered_at=self.now(),
                promoted=promoted,
                gate=verdict,
            )
            try:
                registered = self.store.add_model_version(version)
            except ConcurrencyError:  # another run took that version number: count again
                continue
            self._publish(registered)
            return registered
        raise ConcurrencyError(f"model {run.job}")

    def _publish(self, model: ModelVersion) -> None:
        """Mirror a version into the backend's registry; a failure is logged and does not hold the run back."""
        try:
            self.backend.publish_model(model)
        except BackendError as exc:  # the models table is the registry of record; the version is there
            log.warning(
                "model %s:%s not published to the %s registry: %s", model.name, model.version, self.backend.name, exc
            )

    def lineage(self, name: str, version: int) -> tuple[ModelVersion, Run, Snapshot]:
        """model → the run that trained it → the snapshot it read (whose blobs are listed)."""
        model = next((v for v in self.store.model_versions(name) if v.version == version), None)
        if model is None:
            raise NotFound("model version", f"{name}@{version}")
        return model, self.get_run(model.run_id), self.snapshot(model.snapshot_id)

    def current_model(self, name: str) -> ModelVersion | None:
        """The latest promoted version."""
        return next((v for v in reversed(self.store.model_versions(name)) if v.promoted), None)

    def _read_metrics(self, run: Run) -> dict[str, Any]:
        try:
            raw = self.data.read(self.settings.runs_container, run_output_prefix(run) + "outputs/metrics.json")
            metrics = json.loads(raw)
        except (NotFound, ValueError):
            log.warning("run %s completed without a readable metrics.json", run.id)
            return {}
        return metrics if isinstance(metrics, dict) else {}

    def _update(self, run_id: str, decide: Callable[[Run], Run | None]) -> Run:
        """Read, decide, write conditionally; on a lost race re-read and decide again."""
        for _ in range(_SAVE_ATTEMPTS):
            run = self.get_run(run_id)
            changed = decide(run)
            if changed is None:
                return run
            try:
                saved = self.store.save_run(changed)
            except ConcurrencyError:
                continue
            if saved.cluster and saved.last and saved.last.applied:
                self._sync_cluster(saved)
            return saved
        raise ConcurrencyError(f"run {run_id}")

    # -------------------------------------------------------------- reconcile
    def reconcile(self) -> None:
        """Advance every active run, then make sure idle clusters are scaling (and reach) zero."""
        for run in self.store.find_runs(states=ACTIVE_STATES):
            try:
                self.advance(run.id)
            except Exception:  # one bad run must not stall the others
                log.exception("reconcile: run %s could not advance", run.id)
        for job in self.store.list_jobs():
            if job.watch_prefix:
                try:
                    self._reconcile_window(job)
                except Exception:  # one job's window must not stall the others
                    log.exception("reconcile: retraining window of job %s failed", job.name)
        for cluster in self.store.list_clusters():
            if cluster.backend == self.backend.name:
                self._reconcile_cluster(cluster)

    def _sync_cluster(self, run: Run) -> None:
        """A run changed state on a cluster: update the cluster's record, scaling to zero if it was the last."""
        record = self.store.get_cluster(self.backend.name, run.cluster)
        self._reconcile_cluster(record or ClusterRecord(backend=self.backend.name, name=run.cluster))

    def _reconcile_cluster(self, cluster: ClusterRecord) -> None:
        now = self.now()
        active = self.store.find_runs(states=ACTIVE_STATES, cluster=cluster.name)
        desired = max((self.backend.cluster_for(r.manifest["compute"]).nodes for r in active), default=0)
        if desired == 0 and (cluster.desired_nodes or cluster.observed_nodes):
            self.backend.scale_to_zero(cluster.name)  # idempotent: repeated until nodes are seen at zero
        if desired != cluster.desired_nodes:
            cluster = replace(
                cluster,
                desired_nodes=desired,
                last_scale_action=f"scale-to-{desired}",
                last_scale_at=now,
                zero_at=None,
                seconds_to_zero=None,
            )
        observed = self.backend.cluster_nodes(cluster.name)
        cluster = replace(cluster, observed_nodes=observed, active_runs=tuple(r.id for r in active))
        if observed == 0 and desired == 0 and cluster.zero_at is None and cluster.last_scale_at:
            cluster = replace(cluster, zero_at=now, seconds_to_zero=(now - cluster.last_scale_at).total_seconds())
        self.store.put_cluster(cluster)


def submission_for(run: Run, spec: ClusterSpec, *, runs_container: str, attempt: int) -> JobSubmission:
    """What a backend is asked to run for one attempt of a run (also what `aztrain plan` shows)."""
    manifest = run.manifest
    return JobSubmission(
        name=backend_job_name(run.id, attempt),
        run_id=run.id,
        job=run.job,
        cluster=spec,
        entrypoint=manifest["trainer"]["entrypoint"],
        args=manifest["trainer"]["args"],
        data_container=manifest["data"]["container"],
        data_prefix=manifest["data"]["prefix"],
        snapshot=snapshot_blob(run.snapshot_id),
        output_container=runs_container,
        output_prefix=run_output_prefix(run),
        max_runtime_seconds=manifest["compute"]["max_runtime"],
        snapshot_id=run.snapshot_id,
        manifest_hash=run.manifest_hash,
    )


def backend_job_name(run_id: str, attempt: int) -> str:
    """The backend's job name for one attempt of a run: derived, so a repeated submit finds the same job."""
    return f"{BACKEND_JOB_PREFIX}{run_id}" + (f"-a{attempt}" if attempt > 1 else "")


def run_id_of(backend_job_id: str) -> str:
    """The run a backend job name belongs to (inverse of `backend_job_name`)."""
    name = backend_job_id.removeprefix(BACKEND_JOB_PREFIX)
    # Matched whole: a run id's own random part can look like an attempt suffix ("…-a81476").
    match = re.fullmatch(rf"({RUN_ID_PATTERN})(?:-a\d+)?", name)
    return match.group(1) if match else name


def snapshot_blob(snapshot_id: str) -> str:
    """Where a snapshot's blob list is kept in the runs container (never a trigger)."""
    return f"_snapshots/{snapshot_id}.json"


def run_output_prefix(run: Run) -> str:
    """Where a run's logs and outputs live in the runs container."""
    return f"{run.job}/{run.id}/"


def _job_name_hint(text: str | bytes, source: str) -> str:
    """Best-effort job name for a rejected manifest: its `name` if readable, else the file's stem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        document = None
    name = document.get("name") if isinstance(document, dict) else None
    candidate = name if isinstance(name, str) else PurePosixPath(source).stem
    # Table Storage keys must not contain /, \, #, ? or control characters.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", candidate)[:63]
    return cleaned or "unknown"

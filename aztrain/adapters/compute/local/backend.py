"""`ComputeBackend` on this machine: a simulated GPU cluster that runs real `horovodrun` or `torchrun`.

Nodes are simulated (they "provision" after a configurable delay and count down to zero when
released); the training is not: each job is a supervisor process (`local.job`) that downloads exactly
the blobs of the run's snapshot, runs its distribution's launcher (`local.launchers`), streams logs to
blob storage, uploads outputs and writes Azure ML-style statuses to `status.json`. Job folders live
under the state dir, so the backend survives a restart of the host.

Each simulated cluster has a fixed number of nodes (`AZTRAIN_LOCAL_CLUSTER_NODES`). As on
Azure ML, a job that does not fit on the nodes left waits in `Queued` and starts, oldest
first, when running jobs free theirs; a cluster's member jobs are indexed in a folder of
its own, so scheduling costs grow with the jobs on the cluster, never with history.

A serverless profile plays Azure ML's serverless compute: no simulated cluster, the job's nodes
provisioned for it alone when it is submitted and released when it ends. The nodes held count
against a simulated quota per VM family (`AZTRAIN_LOCAL_QUOTA`, `local.quota`), as on Azure ML.

It runs past 300 lines because it plays both of Azure ML's placements (a cluster with its queue,
and serverless nodes) beside the supervisor bookkeeping each job needs; the quota is its own module.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil

from aztrain.adapters.compute.local.quota import SimulatedQuota, cluster_quota_fields
from aztrain.domain.compute_rules import local_cluster_for
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.profiles import load_profiles
from aztrain.domain.records import (
    ClusterSpec,
    JobObservation,
    JobPhase,
    JobSubmission,
    ModelVersion,
    Quota,
)
from aztrain.service.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

#: The statuses a job supervisor writes (Azure ML's words, so logs read the same on both backends) → phases.
PHASES: dict[str, JobPhase] = {
    "Queued": JobPhase.PENDING,
    "NotStarted": JobPhase.PENDING,
    "Preparing": JobPhase.PENDING,
    "Running": JobPhase.RUNNING,
    "Finalizing": JobPhase.RUNNING,
    "Completed": JobPhase.COMPLETED,
    "Failed": JobPhase.FAILED,
    "Canceled": JobPhase.CANCELED,
}
#: Environment marker on every process of a job: how cancel finds stragglers and tests prove none are left.
JOB_ENV_MARKER = "AZTRAIN_LOCAL_JOB"
_SPAWN_GRACE_SECONDS = 30.0


def write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    """Write JSON so readers never see half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def job_processes(job_name: str) -> list[psutil.Process]:
    """Every live process carrying the job's environment marker."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(JOB_ENV_MARKER) == job_name and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


class LocalBackend:
    """A simulated cluster per compute profile; jobs run as real Horovod or PyTorch DDP processes."""

    name = "local"

    def __init__(self, settings: Settings, *, child_env: dict[str, str] | None = None) -> None:
        self._settings = settings
        self._root = settings.local_state_dir
        self._clusters_dir = self._root / "clusters"
        self._jobs_dir = self._root / "jobs"
        self._clusters_dir.mkdir(parents=True, exist_ok=True)
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._child_env = child_env if child_env is not None else dict(os.environ)
        self._profiles = load_profiles(settings.compute_profiles, settings.allowed_profiles)
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._quota = SimulatedQuota(
            settings.local_quota,
            self._clusters_dir,
            self._root / "serverless",
            nodes=self.cluster_nodes,
            alive=self._holds_nodes,
        )

    # ------------------------------------------------------------ clusters
    def cluster_for(self, compute: ComputeSpec) -> ClusterSpec:
        """A simulated cluster named after the profile, or serverless nodes (`profiles.local_cluster_for`)."""
        return local_cluster_for(
            self._profiles,
            compute,
            cluster_nodes=self._settings.local_cluster_nodes,
            offered_only=bool(self._settings.allowed_profiles),
        )

    def quota(self, spec: ClusterSpec) -> Quota | None:
        """The simulated quota of the spec's family (`AZTRAIN_LOCAL_QUOTA`), with the nodes held now."""
        return self._quota.of(spec)

    def ensure_cluster(self, spec: ClusterSpec) -> int:
        if spec.serverless:  # no cluster: the nodes are provisioned with the job
            return spec.nodes
        with self._lock:
            state = self._cluster_state(spec.name)
            if state["target"] < spec.nodes:
                state.update(target=spec.nodes, change_at=time.time() + self._settings.local_provision_seconds)
                state.update(cluster_quota_fields(spec))
                write_json_atomic(self._cluster_file(spec.name), state)
                log.info("local cluster %s: provisioning %d node(s)", spec.name, spec.nodes)
            return self._settle(spec.name, state)

    def cluster_nodes(self, cluster: str) -> int:
        with self._lock:
            return self._settle(cluster, self._cluster_state(cluster))

    def scale_to_zero(self, cluster: str) -> None:
        with self._lock:
            state = self._cluster_state(cluster)
            if state["target"] == 0:
                return
            # Releasing nodes takes a moment too, so the reconciler has a real scale-down to observe.
            state.update(target=0, change_at=time.time() + self._settings.local_provision_seconds / 4)
            write_json_atomic(self._cluster_file(cluster), state)
            log.info("local cluster %s: scaling to zero", cluster)

    def _cluster_file(self, name: str) -> Path:
        return self._clusters_dir / f"{name}.json"

    def _cluster_state(self, name: str) -> dict[str, Any]:
        return {"nodes": 0, "target": 0, "change_at": 0.0, **read_json(self._cluster_file(name))}

    def _settle(self, name: str, state: dict[str, Any]) -> int:
        """Nodes in place now: the target once its change time has passed."""
        if state["nodes"] != state["target"] and time.time() >= state["change_at"]:
            state["nodes"] = state["target"]
            write_json_atomic(self._cluster_file(name), state)
        return int(state["nodes"])

    # ---------------------------------------------------------------- jobs
    def submit(self, job: JobSubmission) -> str:
        """Queue the job on its cluster; it starts at once if the cluster has the nodes free."""
        folder = self._jobs_dir / job.name
        try:
            folder.mkdir()
        except FileExistsError:  # repeated submit: the job already exists
            return job.name
        write_json_atomic(folder / "submission.json", asdict(job))
        write_json_atomic(folder / "status.json", {"status": "Queued", "error": ""})
        if job.cluster.serverless:  # nodes for this job alone, released when it ends: it never waits for others
            self._quota.hold(job.name, job.cluster)
            with self._lock:
                self._spawn(job.name)
            return job.name
        members = self._members(job.cluster.name)
        members.mkdir(parents=True, exist_ok=True)
        # The marker's creation order is the queue order; it holds the nodes the job needs.
        (members / job.name).write_text(str(job.cluster.nodes))
        self._start_queued(job.cluster.name)
        return job.name

    def _start_queued(self, cluster: str) -> None:
        """Start waiting jobs, oldest first, while the cluster has free nodes; forget jobs that ended."""
        members = self._members(cluster)
        with self._lock, _locked(self._clusters_dir / f"{cluster}.lock"):
            busy, waiting = 0, []
            for marker in sorted(members.glob("*"), key=lambda m: m.stat().st_mtime_ns) if members.is_dir() else []:
                name, nodes = marker.name, int(marker.read_text() or 1)
                if self._pid(name) is None and self._status(name).get("status") == "Queued":
                    waiting.append((name, nodes))
                elif self._pid(name) is not None and self._supervisor_alive(name):
                    busy += nodes
                else:  # ended, or canceled before it started
                    marker.unlink(missing_ok=True)
            for name, nodes in waiting:
                if busy + nodes > self._settings.local_cluster_nodes:
                    break  # first come, first served: a large job is not overtaken by smaller ones
                self._spawn(name)
                busy += nodes

    def _spawn(self, job_name: str) -> None:
        folder = self._jobs_dir / job_name
        env = {
            **self._child_env,
            JOB_ENV_MARKER: job_name,
            "AZTRAIN_LOCAL_MAX_SLOTS": str(self._settings.local_max_slots),
            "PYTHONUNBUFFERED": "1",
        }
        with (folder / "supervisor.log").open("ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "aztrain.adapters.compute.local.job", str(folder)],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel signals the whole job
            )
        self._children[job_name] = child
        (folder / "supervisor.pid").write_text(str(child.pid))
        log.info("local job %s: started supervisor pid %d", job_name, child.pid)

    def _members(self, cluster: str) -> Path:
        return self._clusters_dir / f"{cluster}.jobs"

    def observe(self, backend_job_id: str) -> JobObservation:
        folder = self._jobs_dir / backend_job_id
        if not folder.is_dir():
            return JobObservation(JobPhase.FAILED, "NotFound", f"local job {backend_job_id} does not exist")
        submission = read_json(folder / "submission.json")
        if submission and submission["cluster"].get("placement") != "serverless":  # its cluster's queue moves on
            self._start_queued(submission["cluster"]["name"])
        status = self._status(backend_job_id)
        word = str(status.get("status", "NotStarted"))
        phase = PHASES.get(word, JobPhase.UNKNOWN)
        if word == "Queued" and self._pid(backend_job_id) is None:
            return JobObservation(phase, word)
        if not phase.is_final and not self._supervisor_alive(backend_job_id):
            reason = "the local job supervisor exited unexpectedly; see supervisor.log in the job folder"
            return JobObservation(JobPhase.FAILED, "Failed", reason)
        failed = phase is JobPhase.FAILED
        return JobObservation(
            phase, word, str(status.get("error", "")) if failed else "", failed and bool(status.get("preempted"))
        )

    def phase_of(self, status: str) -> JobPhase:
        return PHASES.get(status, JobPhase.UNKNOWN)

    def cancel(self, backend_job_id: str) -> None:
        folder = self._jobs_dir / backend_job_id
        if not folder.is_dir():
            return
        (folder / "cancel").touch()
        if self._status(backend_job_id).get("status") == "Queued" and self._pid(backend_job_id) is None:
            # Never started: it leaves the queue (the supervisor, if the queue starts it now, sees `cancel`).
            write_json_atomic(folder / "status.json", {"status": "Canceled", "error": ""})
            return
        pid = self._pid(backend_job_id)
        if pid and self._supervisor_alive(backend_job_id):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)

    def publish_model(self, model: ModelVersion) -> None:
        """Nothing to do: on this machine the `models` table and the runs container are the registry."""

    def _holds_nodes(self, job_name: str) -> bool:
        """Whether a serverless job still holds its nodes: until it ends, or its supervisor is gone."""
        if PHASES.get(str(self._status(job_name).get("status")), JobPhase.UNKNOWN).is_final:
            return False
        return self._pid(job_name) is None or self._supervisor_alive(job_name)

    def _status(self, job_name: str) -> dict[str, Any]:
        return read_json(self._jobs_dir / job_name / "status.json")

    def _pid(self, job_name: str) -> int | None:
        try:
            return int((self._jobs_dir / job_name / "supervisor.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _supervisor_alive(self, job_name: str) -> bool:
        child = self._children.get(job_name)
        if child is not None:
            if child.poll() is None:  # poll() also reaps an ended child, so no zombie is left behind
                return True
            del self._children[job_name]
            return False
        pid = self._pid(job_name)
        if pid is None:  # between mkdir and spawn in another thread: give it a moment
            status_file = self._jobs_dir / job_name / "status.json"
            return status_file.exists() and time.time() - status_file.stat().st_mtime < _SPAWN_GRACE_SECONDS
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes (two hosts or a host and the CLI on one state dir)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stack_processes(state_dir: Path) -> list[psutil.Process]:
    """Every live process of any job under `state_dir` (a local stack's jobs), found in one pass."""
    jobs = state_dir / "jobs"
    found = []
    for proc in psutil.process_iter():
        try:
            name = proc.environ().get(JOB_ENV_MARKER)
            if name and (jobs / name).is_dir() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found

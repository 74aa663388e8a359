"""Ports: what the service needs from the outside world, as Protocols.

Adapters in `aztrain.adapters` implement them on Azure SDKs, on this machine,
or in memory for unit tests; `bootstrap` picks which.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from aztrain.errors import ManifestError
from aztrain.runs import Run, RunState, Transition


@dataclass(frozen=True)
class JobRecord:
    """The `jobs` table row: a job's latest accepted manifest and what it watches."""

    name: str
    manifest: dict[str, Any]
    manifest_hash: str
    updated_at: datetime
    watch_container: str = ""
    watch_prefix: str = ""  # empty: the job does not retrain on data arrival
    watch_since: datetime | None = None  # uploads before this belong to the first run, not to a window
    last_run_id: str = ""
    last_trigger_at: datetime | None = None
    etag: str | None = None


@dataclass(frozen=True)
class ClusterRecord:
    """The `clusters` table row: desired vs observed nodes and the last scale action."""

    backend: str
    name: str
    desired_nodes: int = 0
    observed_nodes: int = 0
    active_runs: tuple[str, ...] = ()
    last_scale_action: str = ""
    last_scale_at: datetime | None = None
    zero_at: datetime | None = None  # when the node count was first seen at zero after a scale-down
    seconds_to_zero: float | None = None
    etag: str | None = None


@dataclass(frozen=True)
class BlobInfo:
    """One blob as listed: enough to snapshot a data set."""

    name: str
    size: int
    etag: str
    version_id: str = ""  # set where blob versioning is on


@dataclass(frozen=True)
class Arrival:
    """A data blob that landed under a watched prefix (`arrivals` table).

    `key` identifies the upload (blob name + ETag), so however often Event Grid
    delivers it, it is one row. `consumed_by` is the run that served it, or why none did.
    """

    job: str
    key: str
    blob: str
    at: datetime
    consumed_by: str = ""


@dataclass(frozen=True)
class ModelVersion:
    """A registered model (`models` table): what a completed run produced, and its lineage."""

    name: str
    version: int
    run_id: str
    snapshot_id: str
    manifest_hash: str
    artifact: str  # container/path of model.pt
    metrics: dict[str, Any]
    registered_at: datetime
    promoted: bool = False
    gate: str = ""  # the promotion rule and how it was judged


class RunStore(Protocol):
    """Jobs, runs, run history, event claims and clusters (Table Storage in Azure).

    Writes of jobs and runs are conditional on the ETag they were read with:
    a lost race raises `ConcurrencyError` and the caller re-reads and re-decides.
    """

    def get_job(self, name: str) -> JobRecord | None: ...

    def put_job(self, job: JobRecord) -> JobRecord:
        """Create (`etag is None`) or replace if unchanged since read. Returns the stored record."""
        ...

    def list_jobs(self) -> list[JobRecord]: ...

    def add_run(self, run: Run) -> Run:
        """Insert a new run and its first history row; `ConcurrencyError` if the id exists."""
        ...

    def save_run(self, run: Run) -> Run:
        """Replace a run if unchanged since read, then append `run.last` to its history."""
        ...

    def get_run(self, run_id: str) -> Run | None:
        """A run by id alone (point reads, not a table scan)."""
        ...

    def find_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        cluster: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally of one job, in some states, on one cluster."""
        ...

    def history(self, run_id: str) -> list[Transition]:
        """Every transition of a run, oldest first."""
        ...

    def claim(self, scope: str, key: str, value: str) -> str:
        """Record `value` for `key` once. Returns the value stored by whoever claimed first."""
        ...

    def record_arrival(self, arrival: Arrival) -> None:
        """Insert the arrival unless its key is already recorded (duplicates change nothing)."""
        ...

    def pending_arrivals(self, job: str) -> list[Arrival]:
        """Arrivals of a job not yet consumed, oldest first."""
        ...

    def consume_arrivals(self, job: str, keys: Iterable[str], by: str) -> None:
        """Mark arrivals as served by a run (or skipped, with the reason)."""
        ...

    def add_model_version(self, model: ModelVersion) -> ModelVersion:
        """Insert a version; `ConcurrencyError` if that version number is taken."""
        ...

    def model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Versions of one model (or all), oldest first."""
        ...

    def get_cluster(self, backend: str, name: str) -> ClusterRecord | None: ...

    def put_cluster(self, cluster: ClusterRecord) -> ClusterRecord:
        """Upsert; the reconciler is the only writer of observed state, so last write wins."""
        ...

    def list_clusters(self) -> list[ClusterRecord]: ...


class DataStore(Protocol):
    """Blob Storage: manifests, data, logs and outputs."""

    def read(self, container: str, name: str, *, max_bytes: int | None = None) -> bytes:
        """The blob's bytes (at most `max_bytes + 1`, so callers can detect oversize). `NotFound` if absent."""
        ...

    def write(self, container: str, name: str, data: bytes) -> None: ...

    def append(self, container: str, name: str, data: bytes) -> None:
        """Append to an append blob, creating it first (logs are streamed this way)."""
        ...

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]: ...

    def download(self, container: str, blobs: Sequence[BlobInfo], dest: Path) -> None:
        """Download exactly these blobs into `dest`, keeping their paths.

        `DataChanged` if one was rewritten or deleted since it was listed: a run trains on its snapshot or not at all.
        """
        ...

    def upload_folder(self, folder: Path, container: str, prefix: str) -> int:
        """Upload every file under `folder` to `prefix`. Returns the count."""
        ...


@dataclass(frozen=True)
class ClusterSpec:
    """The cluster a run needs: one per compute profile."""

    name: str
    nodes: int
    processes_per_node: int
    vm_size: str
    priority: str


def cluster_spec(compute: dict[str, Any], *, name: str, default_vm_size: str, max_nodes: int) -> ClusterSpec:
    """The `ClusterSpec` for a manifest's `compute`, or `ManifestError` if it asks for more than `max_nodes`."""
    if compute["nodes"] > max_nodes:
        raise ManifestError([f"compute.nodes: {compute['nodes']} is more than the {max_nodes} node(s) {name} allows"])
    return ClusterSpec(
        name=name,
        nodes=compute["nodes"],
        processes_per_node=compute["processes_per_node"],
        vm_size=compute.get("vm_size") or default_vm_size,
        priority=compute["priority"],
    )


@dataclass(frozen=True)
class JobSubmission:
    """Everything a backend needs to start one run's training."""

    name: str  # deterministic, derived from the run id: a repeated submit finds the same job
    run_id: str
    job: str
    cluster: ClusterSpec
    entrypoint: str
    args: dict[str, Any]
    data_container: str
    data_prefix: str
    snapshot: str  # blob (in output_container) listing exactly the data blobs to read
    output_container: str
    output_prefix: str
    max_runtime_seconds: int
    snapshot_id: str
    manifest_hash: str

    @property
    def tags(self) -> dict[str, str]:
        """What links the backend's job back to its run: run, job, manifest hash and data snapshot."""
        return {
            "aztrain.run": self.run_id,
            "aztrain.job": self.job,
            "aztrain.manifest": self.manifest_hash,
            "aztrain.snapshot": self.snapshot_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSubmission:
        """The inverse of `dataclasses.asdict`: how a submission written to disk is read back."""
        return cls(**{**data, "cluster": ClusterSpec(**data["cluster"])})

    def trainer_flags(self) -> list[str]:
        """The trainer's arguments after its data and output folders: the manifest's args and the run's lineage.

        The snapshot id keys the trainer's node-local cache; both ids are recorded in `model.pt`.
        """
        return [
            "--args-json", json.dumps(self.args, sort_keys=True),
            "--snapshot-id", self.snapshot_id,
            "--manifest-hash", self.manifest_hash,
        ]  # fmt: skip


class ComputeBackend(Protocol):
    """A place that runs Horovod jobs on a cluster that can scale to zero.

    Every call is quick and safe to repeat: slow work (resizes, training) runs
    on the backend, and the reconciler polls its progress.
    """

    name: str

    def cluster_for(self, compute: dict[str, Any]) -> ClusterSpec:
        """The cluster for a manifest's `compute` section; `ManifestError` if this backend cannot host it."""
        ...

    def ensure_cluster(self, spec: ClusterSpec) -> int:
        """Start growing the cluster to `spec.nodes` if it is smaller. Returns the nodes ready now."""
        ...

    def submit(self, job: JobSubmission) -> str:
        """Start the job, or find it if already started under `job.name`. Returns the backend job id."""
        ...

    def job_status(self, backend_job_id: str) -> str:
        """The job's status in Azure ML's vocabulary (Queued, Running, Completed, ...)."""
        ...

    def job_error(self, backend_job_id: str) -> str:
        """A short reason for a failed job ('' when none is known)."""
        ...

    def is_preempted(self, backend_job_id: str) -> bool:
        """True when a failed job failed because its (low-priority) nodes were taken back."""
        ...

    def cancel(self, backend_job_id: str) -> None:
        """Ask the job to stop; idempotent."""
        ...

    def scale_to_zero(self, cluster: str) -> None:
        """Release every node of the cluster that no job uses; idempotent."""
        ...

    def cluster_nodes(self, cluster: str) -> int:
        """Nodes currently allocated to the cluster."""
        ...

    def publish_model(self, model: ModelVersion) -> None:
        """Register a model version in the backend's own model registry as well; idempotent.

        The `models` table stays the control plane's registry (versions, promotion, lineage);
        this makes the version visible where the backend's users look for models.
        """
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...

"""Records: the plain, immutable data the ports exchange (rows, blobs, cluster shapes, job observations).

Kept apart from `ports` so that a module can name a record without depending on a Protocol,
and apart from `runs`, which owns the run and its state machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from aztrain.domain.errors import ManifestError
from aztrain.domain.manifest import ComputeSpec, Distribution, JobManifest


@dataclass(frozen=True)
class JobRecord:
    """The `jobs` table row: a job's latest accepted manifest and what it watches."""

    name: str
    spec: JobManifest
    manifest_hash: str
    updated_at: datetime
    watch_container: str = ""
    watch_prefix: str = ""  # empty: the job does not retrain on data arrival
    watch_since: datetime | None = None  # uploads before this belong to the first run, not to a window
    last_run_id: str = ""
    etag: str | None = None


@dataclass(frozen=True)
class ClusterRecord:
    """The `clusters` table row: desired vs observed nodes and the last scale action."""

    backend: str
    name: str
    desired_nodes: int = 0
    observed_nodes: int = 0
    active_runs: int = 0  # a count: the runs are in the `active` index, so this row never grows
    last_scale_action: str = ""
    last_scale_at: datetime | None = None
    zero_at: datetime | None = None  # when the node count was first seen at zero after a scale-down
    seconds_to_zero: float | None = None
    zero_published_at: datetime | None = None  # the `zero_at` whose scaled_to_zero event was published


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
class DeadLetter:
    """An event that can never succeed (`deadletters` table): recorded with why, then acknowledged.

    One row per (function, event id), so a redelivery of the same event changes nothing.
    """

    function: str  # the handler that gave up on it
    event_id: str
    event_type: str
    subject: str
    reason: str
    at: datetime


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


#: Where a run's nodes come from: a named cluster of its profile, or serverless nodes for the job alone.
Placement = Literal["cluster", "serverless"]


@dataclass(frozen=True)
class ClusterSpec:
    """The nodes a run needs: on its compute profile's cluster, or (`serverless`) for the job alone.

    `vm_family` and `vcpus_per_node` say what the nodes take from quota ('' and 0 when unknown:
    no quota is checked).
    """

    name: str
    nodes: int
    processes_per_node: int
    vm_size: str
    priority: str
    placement: Placement = "cluster"
    vm_family: str = ""
    vcpus_per_node: int = 0

    @property
    def serverless(self) -> bool:
        return self.placement == "serverless"


def cluster_spec(
    compute: ComputeSpec,
    *,
    name: str,
    vm_size: str,
    max_nodes: int,
    placement: Placement = "cluster",
    vm_family: str = "",
    vcpus_per_node: int = 0,
) -> ClusterSpec:
    """The `ClusterSpec` for a manifest's `compute`, or `ManifestError` if it asks for more than `max_nodes`."""
    if compute.nodes > max_nodes:
        raise ManifestError.at("compute.nodes", f"{compute.nodes} is more than the {max_nodes} node(s) {name} allows")
    return ClusterSpec(
        name=name,
        nodes=compute.nodes,
        processes_per_node=compute.processes_per_node,
        vm_size=vm_size,
        priority=compute.priority,
        placement=placement,
        vm_family=vm_family,
        vcpus_per_node=vcpus_per_node,
    )


@dataclass(frozen=True)
class Quota:
    """One quota a backend's nodes count against, in vCPUs: what is in use now and the limit."""

    name: str  # what the backend calls it, e.g. "standardNCASv3_T4Family"
    used: int
    limit: int


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
    correlation: str = ""  # the run's correlation id: in the job's tags and its log header
    distribution: Distribution = "horovod"  # which launcher starts the processes (each backend picks its own)
    code_snapshot: str = ""  # the user's code snapshot id; '' runs the built-in trainer
    environment: dict[str, str] = field(default_factory=dict)  # the manifest's trainer.environment; {}: default

    @property
    def tags(self) -> dict[str, str]:
        """What links the backend's job back to its run: run, job, manifest, data (and code) snapshot, correlation."""
        return {
            "aztrain.run": self.run_id,
            "aztrain.job": self.job,
            "aztrain.manifest": self.manifest_hash,
            "aztrain.snapshot": self.snapshot_id,
            "aztrain.correlation": self.correlation,
            **({"aztrain.code": self.code_snapshot} if self.code_snapshot else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSubmission:
        """The inverse of `dataclasses.asdict`: how a submission written to disk is read back."""
        return cls(**{**data, "cluster": ClusterSpec(**data["cluster"])})

    def trainer_flags(self) -> list[str]:
        """The trainer's arguments after its data and output folders: the manifest's args and distribution, the lineage.

        The snapshot id keys the trainer's node-local cache; both ids are recorded in `model.pt`.
        """
        return [
            "--args-json", json.dumps(self.args, sort_keys=True),
            "--distribution", self.distribution,
            "--snapshot-id", self.snapshot_id,
            "--manifest-hash", self.manifest_hash,
        ]  # fmt: skip


@dataclass(frozen=True)
class OutboundEvent:
    """One CloudEvents 1.0 event for the custom topic (`aztrain.*` types, documented in docs/events.md).

    `id` is stable (`<run id>:<seq>[:<kind>]`): a redelivery carries the same id, for subscribers to dedupe on.
    """

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    correlation: str  # the `correlationid` extension attribute
    cause: str  # the `causationid` extension: the event or request that caused this one


class JobPhase(StrEnum):
    """Where a backend job is, in the control plane's own words; each backend maps its statuses onto these."""

    PENDING = "pending"  # accepted, waiting for nodes, preparing its environment
    RUNNING = "running"  # training (or finalizing its outputs)
    STOPPING = "stopping"  # a cancel was accepted and has not finished
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"  # the backend cannot tell now (not responding, paused, a status this version does not know)

    @property
    def is_final(self) -> bool:
        return self in (JobPhase.COMPLETED, JobPhase.FAILED, JobPhase.CANCELED)


@dataclass(frozen=True)
class JobObservation:
    """One look at a backend job: its phase, the backend's own word for it, and why it failed if it did."""

    phase: JobPhase
    status: str  # the backend's own status, for history ("Queued", "NotResponding", ...)
    error: str = ""  # a short reason when the job failed ('' when none is known)
    preempted: bool = False  # failed because its (low-priority) nodes were taken back: worth resubmitting

"""Ports: what the service needs from the outside world, as Protocols.

Adapters in `aztrain.adapters` implement them on Azure SDKs, on this machine,
or in memory for unit tests; `bootstrap` picks which. The records they exchange
live in `aztrain.domain.records`. Storage is split by role, so a use case names only the
tables it touches; one Table Storage adapter implements them all (`ControlStore`).
It runs past 300 lines because each method's docstring is its contract, which every adapter and its
contract tests (`tests/contract/`) keep.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from aztrain.domain.cost import CostEntry
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.records import (
    Arrival,
    BlobInfo,
    ClusterRecord,
    ClusterSpec,
    DeadLetter,
    JobObservation,
    JobPhase,
    JobRecord,
    JobSubmission,
    ModelVersion,
    OutboundEvent,
    Quota,
)
from aztrain.domain.runs import Run, RunState, Transition
from aztrain.domain.teams import Team


class Runs(Protocol):
    """Runs and their history (`runs`, `runhistory`).

    Writes are conditional on the ETag the run was read with: a lost race raises
    `ConcurrencyError` and the caller re-reads and re-decides.
    """

    def add_run(self, run: Run) -> Run:
        """Insert a new run and its first history row; `ConcurrencyError` if the id exists."""
        ...

    def save_run(self, run: Run) -> Run:
        """Replace a run if unchanged since read, then append `run.last` to its history."""
        ...

    def get_run(self, run_id: str) -> Run | None:
        """A run by id alone (point reads, not a table scan)."""
        ...

    def runs_by_short_id(self, short_id: str) -> list[Run]:
        """The runs whose id ends in `short_id` (`layout.short_run_id`): an index read, then a point read each."""
        ...

    def find_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        cluster: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Runs, newest first, optionally of one job, in some states, on one cluster.

        Active runs of all jobs come from the active index: copies, possibly behind, without outboxes.
        """
        ...

    def page_of_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        after: str | None = None,
        limit: int,
    ) -> list[Run]:
        """Up to `limit` runs, newest first, older than the run id `after`: one page, read as one.

        What it costs does not grow with history: without `states`, or with active ones only, it reads
        `limit` rows (or the active runs); with finished states it reads past the newer runs in other states.
        """
        ...

    def runs_by_prefix(self, prefix: str, limit: int) -> list[Run]:
        """Up to `limit` runs whose ids start with `prefix` (at least 6 characters), newest first."""
        ...

    def history(self, run_id: str) -> list[Transition]:
        """Every transition of a run, oldest first."""
        ...

    def refresh_active(self, run: Run) -> None:
        """Make the run's copy among the active ones match `run` as just read (a crash can leave it behind)."""
        ...


class Outbox(Protocol):
    """The runs' outbox: each run's `outbox` holds its applied transitions not yet published.

    They are written by `add_run`/`save_run` in the same conditional write as the transition itself,
    so a transition is never recorded without its event, nor an event staged without its transition.
    """

    def save_outbox(self, run: Run) -> Run:
        """Replace only the run's outbox if the run is unchanged since read (`ConcurrencyError` if not)."""
        ...

    def unpublished_runs(self) -> list[Run]:
        """Runs (in any state) whose outbox is not empty, from the active index: the reconciler's backstop drains them.

        They are copies, possibly behind their runs and without their outboxes (nor an ETag): read a run before
        draining it.
        """
        ...


class Jobs(Protocol):
    """Each job's latest accepted manifest and watch (`jobs`); writes are ETag-conditional like runs."""

    def get_job(self, name: str) -> JobRecord | None: ...

    def put_job(self, job: JobRecord) -> JobRecord:
        """Create (`etag is None`) or replace if unchanged since read. Returns the stored record."""
        ...

    def list_jobs(self) -> list[JobRecord]: ...

    def watching(self, container: str | None = None) -> list[JobRecord]:
        """Jobs that watch a prefix of `container` (or of any), by name (an index: never a read of every job)."""
        ...


class Claims(Protocol):
    """Idempotency (`claims`): the first writer of a key wins, and everyone learns its value."""

    def claim(self, scope: str, key: str, value: str) -> str:
        """Record `value` for `key` once. Returns the value stored by whoever claimed first."""
        ...


class Arrivals(Protocol):
    """Data uploads under watched prefixes, pending until a run consumes them (`arrivals`)."""

    def record_arrivals(self, arrivals: Sequence[Arrival]) -> None:
        """Insert each arrival unless its key is already recorded (duplicates change nothing)."""
        ...

    def pending_arrivals(self, job: str) -> list[Arrival]:
        """Arrivals of a job not yet consumed, oldest first."""
        ...

    def consume_arrivals(self, job: str, keys: Iterable[str], by: str) -> None:
        """Mark arrivals as served by a run (or skipped, with the reason)."""
        ...


class Models(Protocol):
    """The model registry of record (`models`)."""

    def add_model_version(self, model: ModelVersion) -> ModelVersion:
        """Insert a version; `ConcurrencyError` if that version number is taken."""
        ...

    def model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Versions of one model (or all), oldest first."""
        ...


class Clusters(Protocol):
    """Desired vs observed nodes per cluster (`clusters`)."""

    def get_cluster(self, backend: str, name: str) -> ClusterRecord | None: ...

    def put_cluster(self, cluster: ClusterRecord) -> ClusterRecord:
        """Upsert; the reconciler is the only writer of observed state, so last write wins."""
        ...

    def list_clusters(self) -> list[ClusterRecord]: ...


class DeadLetters(Protocol):
    """Events that can never succeed, with the reason (`deadletters`)."""

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Record the letter unless that function already recorded that event (redeliveries change nothing)."""
        ...

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first."""
        ...


class Costs(Protocol):
    """The cost ledger (`costs`): each finished run's final cost, kept by the month it ended in."""

    def record_cost(self, entry: CostEntry) -> None:
        """Store the entry unless its run's is already there (a repeated record changes nothing)."""
        ...

    def costs(self, month: str, team: str | None = None) -> list[CostEntry]:
        """The entries of runs that ended in `month` (`YYYY-MM`), optionally of one team only: one partition read."""
        ...


class Teams(Protocol):
    """Teams and their bounds (`teams`, one small partition read whole); writes are ETag-conditional."""

    def get_team(self, name: str) -> Team | None: ...

    def put_team(self, team: Team) -> Team:
        """Create (`etag is None`) or replace if unchanged since read; `ConcurrencyError` on a lost race."""
        ...

    def delete_team(self, name: str) -> None:
        """Forget a team (its runs keep their team name); no error if it is gone."""
        ...

    def list_teams(self) -> list[Team]:
        """Every team, by name."""
        ...


class ControlStore(Runs, Outbox, Jobs, Claims, Arrivals, Models, Clusters, DeadLetters, Costs, Teams, Protocol):
    """Every table the control plane keeps; one Table Storage account holds them all."""


class EventSink(Protocol):
    """Where outbound events go: an Event Grid custom topic (CloudEvents 1.0 schema)."""

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        """Send the events as one batch; raise if the topic did not accept them (they are sent again later)."""
        ...


class DataStore(Protocol):
    """Blob Storage: manifests, data, logs and outputs."""

    def read(self, container: str, name: str, *, max_bytes: int | None = None) -> bytes:
        """The blob's bytes (at most `max_bytes + 1`, so callers can detect oversize). `NotFound` if absent."""
        ...

    def read_range(self, container: str, name: str, offset: int, length: int) -> tuple[bytes, int]:
        """Up to `length` bytes from `offset` (b"" past the end) and the blob's size now; `NotFound` if absent."""
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


class ComputeBackend(Protocol):
    """A place that runs distributed training jobs on compute that can scale to zero.

    Every call is quick and safe to repeat: slow work (resizes, training) runs
    on the backend, and the reconciler polls its progress.
    """

    name: str

    def cluster_for(self, compute: ComputeSpec) -> ClusterSpec:
        """The cluster for a manifest's `compute` section; `ManifestError` if this backend cannot host it."""
        ...

    def ensure_cluster(self, spec: ClusterSpec) -> int:
        """Start growing the cluster to `spec.nodes` if it is smaller. Returns the nodes ready now.

        Serverless nodes (`spec.serverless`) come with the job itself: `spec.nodes` at once, and nothing is created.
        """
        ...

    def quota(self, spec: ClusterSpec) -> Quota | None:
        """The vCPU quota `spec`'s nodes count against, as used now; None when the backend sets none for them.

        Depends on the VM family and priority alone, and is quick to repeat (a backend caches its reads).
        """
        ...

    def submit(self, job: JobSubmission) -> str:
        """Start the job, or find it if already started under `job.name`. Returns the backend job id.

        The backend starts the job's processes with the launcher of `job.distribution` (Horovod's or
        PyTorch's), which sets the environment docs/trainer.md documents for it.
        """
        ...

    def observe(self, backend_job_id: str) -> JobObservation:
        """Where the job is now, in one call: phase, the backend's own status, and (if it failed) why.

        A job the backend no longer knows is FAILED with a reason, never an exception.
        """
        ...

    def phase_of(self, status: str) -> JobPhase:
        """A status word of this backend's own (as its status events carry it) in the control plane's words.

        A word this backend does not know is `JobPhase.UNKNOWN`: news that changes nothing.
        """
        ...

    def cancel(self, backend_job_id: str) -> None:
        """Ask the job to stop. Idempotent, and a no-op for a job that is finished, stopping or gone."""
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

"""In-memory fakes of every port, for unit tests.

Each passes the same contract tests as its real adapter (tests/contract), so
a unit test against a fake says something true about production.
It runs past 300 lines because the store fake mirrors every role of the Table adapter
(runs, jobs, claims, arrivals, models, clusters, indexes, dead letters, outbox) with the
same ETag rules, in one class, as one contract suite requires.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from aztrain.domain.cost import CostEntry
from aztrain.domain.errors import ConcurrencyError, DataChanged, NotFound
from aztrain.domain.layout import local_path, short_run_id
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
    cluster_spec,
)
from aztrain.domain.runs import Run, RunState, Transition
from aztrain.domain.teams import Team

_etags = itertools.count(1)


def _etag() -> str:
    return f'W/"{next(_etags)}"'


class InMemoryControlStore:
    """`ControlStore` in dictionaries, with the same ETag rules as Table Storage."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._runs: dict[str, Run] = {}
        self._history: dict[str, dict[int, Transition]] = {}
        self._claims: dict[tuple[str, str], str] = {}
        self._clusters: dict[tuple[str, str], ClusterRecord] = {}
        self._arrivals: dict[tuple[str, str], Arrival] = {}
        self._models: dict[tuple[str, int], ModelVersion] = {}
        self._dead_letters: dict[tuple[str, str], DeadLetter] = {}
        self._costs: dict[tuple[str, str], CostEntry] = {}
        self._teams: dict[str, Team] = {}

    def get_job(self, name: str) -> JobRecord | None:
        return self._jobs.get(name)

    def put_job(self, job: JobRecord) -> JobRecord:
        current = self._jobs.get(job.name)
        if (current.etag if current else None) != job.etag:
            raise ConcurrencyError(f"job {job.name}")
        stored = replace(job, etag=_etag())
        self._jobs[job.name] = stored
        return stored

    def list_jobs(self) -> list[JobRecord]:
        return sorted(self._jobs.values(), key=lambda j: j.name)

    def watching(self, container: str | None = None) -> list[JobRecord]:
        return [j for j in self.list_jobs() if j.watch_prefix and container in (None, j.watch_container)]

    def add_run(self, run: Run) -> Run:
        if run.id in self._runs:
            raise ConcurrencyError(f"run {run.id}")
        return self._store(run)

    def save_run(self, run: Run) -> Run:
        current = self._runs.get(run.id)
        if current is None or current.etag != run.etag:
            raise ConcurrencyError(f"run {run.id}")
        return self._store(run)

    def _store(self, run: Run) -> Run:
        stored = replace(run, etag=_etag())
        self._runs[run.id] = stored
        if run.last:
            self._history.setdefault(run.id, {})[run.last.seq] = run.last
        return stored

    def get_run(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def runs_by_short_id(self, short_id: str) -> list[Run]:
        return [run for run in self._runs.values() if short_run_id(run.id) == short_id]

    def save_outbox(self, run: Run) -> Run:
        current = self._runs.get(run.id)
        if current is None or current.etag != run.etag:
            raise ConcurrencyError(f"run {run.id}")
        stored = self._runs[run.id] = replace(current, outbox=run.outbox, etag=_etag())
        return stored

    def unpublished_runs(self) -> list[Run]:
        return [r for r in sorted(self._runs.values(), key=lambda r: r.id) if r.outbox]

    def find_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        cluster: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        wanted = set(states) if states is not None else None
        runs = [
            r
            for r in sorted(self._runs.values(), key=lambda r: r.id)  # ids sort newest first
            if (job is None or r.job == job)
            and (wanted is None or r.state in wanted)
            and (cluster is None or r.cluster == cluster)
        ]
        return runs[:limit] if limit is not None else runs

    def page_of_runs(
        self,
        *,
        job: str | None = None,
        states: Iterable[RunState] | None = None,
        after: str | None = None,
        limit: int,
    ) -> list[Run]:
        return [r for r in self.find_runs(job=job, states=states) if after is None or r.id > after][:limit]

    def runs_by_prefix(self, prefix: str, limit: int) -> list[Run]:
        return [r for r in self.find_runs() if r.id.startswith(prefix)][:limit]

    def refresh_active(self, run: Run) -> None:
        pass  # the active runs are computed here, never stored: nothing can be left behind

    def history(self, run_id: str) -> list[Transition]:
        rows = self._history.get(run_id, {})
        return [rows[seq] for seq in sorted(rows)]

    def claim(self, scope: str, key: str, value: str) -> str:
        return self._claims.setdefault((scope, key), value)

    def record_arrivals(self, arrivals: Sequence[Arrival]) -> None:
        for arrival in arrivals:
            self._arrivals.setdefault((arrival.job, arrival.key), arrival)

    def pending_arrivals(self, job: str) -> list[Arrival]:
        pending = [a for (j, _), a in self._arrivals.items() if j == job and not a.consumed_by]
        return sorted(pending, key=lambda a: (a.at, a.key))

    def consume_arrivals(self, job: str, keys: Iterable[str], by: str) -> None:
        for key in keys:
            self._arrivals[(job, key)] = replace(self._arrivals[(job, key)], consumed_by=by)

    def add_model_version(self, model: ModelVersion) -> ModelVersion:
        if (model.name, model.version) in self._models:
            raise ConcurrencyError(f"model {model.name} version {model.version}")
        self._models[(model.name, model.version)] = model
        return model

    def model_versions(self, name: str | None = None) -> list[ModelVersion]:
        return [m for key, m in sorted(self._models.items()) if name is None or key[0] == name]

    def get_cluster(self, backend: str, name: str) -> ClusterRecord | None:
        return self._clusters.get((backend, name))

    def put_cluster(self, cluster: ClusterRecord) -> ClusterRecord:
        self._clusters[(cluster.backend, cluster.name)] = cluster
        return cluster

    def list_clusters(self) -> list[ClusterRecord]:
        return list(self._clusters.values())

    def add_dead_letter(self, letter: DeadLetter) -> None:
        self._dead_letters.setdefault((letter.function, letter.event_id), letter)

    def dead_letters(self) -> list[DeadLetter]:
        return sorted(self._dead_letters.values(), key=lambda d: (d.at, d.function, d.event_id))

    def record_cost(self, entry: CostEntry) -> None:
        self._costs.setdefault((entry.month, entry.run_id), entry)

    def costs(self, month: str, team: str | None = None) -> list[CostEntry]:
        entries = [e for (m, _), e in self._costs.items() if m == month and team in (None, e.team)]
        return sorted(entries, key=lambda e: (e.team, e.run_id))

    def get_team(self, name: str) -> Team | None:
        return self._teams.get(name)

    def put_team(self, team: Team) -> Team:
        current = self._teams.get(team.name)
        if (current.etag if current else None) != team.etag:
            raise ConcurrencyError(f"team {team.name}")
        stored = replace(team, etag=_etag())
        self._teams[team.name] = stored
        return stored

    def delete_team(self, name: str) -> None:
        self._teams.pop(name, None)

    def list_teams(self) -> list[Team]:
        return sorted(self._teams.values(), key=lambda t: t.name)


class RecordingEventSink:
    """An `EventSink` that keeps what it is sent; `failing` makes it refuse, as a topic that is down."""

    def __init__(self) -> None:
        self.events: list[OutboundEvent] = []
        self.failing = False

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        if self.failing:
            raise ConnectionError("topic unavailable")
        self.events.extend(events)


class InMemoryDataStore:
    """`DataStore` over a dictionary of (container, name) → bytes."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}

    def read(self, container: str, name: str, *, max_bytes: int | None = None) -> bytes:
        try:
            data = self.blobs[(container, name)]
        except KeyError:
            raise NotFound("blob", f"{container}/{name}") from None
        return data if max_bytes is None else data[: max_bytes + 1]

    def read_range(self, container: str, name: str, offset: int, length: int) -> tuple[bytes, int]:
        data = self.read(container, name)
        return data[offset : offset + length], len(data)

    def write(self, container: str, name: str, data: bytes) -> None:
        self.blobs[(container, name)] = data

    def append(self, container: str, name: str, data: bytes) -> None:
        self.blobs[(container, name)] = self.blobs.get((container, name), b"") + data

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        return [
            BlobInfo(name=name, size=len(data), etag=f'"{hash(data) & 0xFFFFFFFF:x}"')
            for (c, name), data in sorted(self.blobs.items())
            if c == container and name.startswith(prefix)
        ]

    def download(self, container: str, blobs: Sequence[BlobInfo], dest: Path) -> None:
        current = {b.name: b.etag for b in self.list(container)}
        for blob in blobs:
            if current.get(blob.name) != blob.etag:
                raise DataChanged(container, blob.name)
            target = local_path(dest, blob.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.blobs[(container, blob.name)])

    def upload_folder(self, folder: Path, container: str, prefix: str) -> int:
        files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        for path in files:
            self.write(container, prefix + path.relative_to(folder).as_posix(), path.read_bytes())
        return len(files)


@dataclass
class FakeJob:
    submission: JobSubmission
    phases: list[JobPhase]  # scripted progression; the last one sticks
    canceled: bool = False
    preempted: bool = False

    @property
    def phase(self) -> JobPhase:
        return JobPhase.CANCELED if self.canceled else self.phases[0]


class FakeComputeBackend:
    """A scripted `ComputeBackend`: clusters grow after `provision_polls` calls, jobs step through `script`.

    Profiles named `serverless…` are serverless: no cluster, nodes for each job until it ends. Every
    node has `VCPUS_PER_NODE` vCPUs of `VM_FAMILY`, whose quota is `vcpu_quota` (None: no quota).
    """

    name = "fake"
    VM_FAMILY = "fakeGPUFamily"
    VCPUS_PER_NODE = 4

    def __init__(
        self,
        *,
        max_nodes: int = 4,
        provision_polls: int = 1,
        script: tuple[JobPhase, ...] = (JobPhase.PENDING, JobPhase.RUNNING, JobPhase.COMPLETED),
        vcpu_quota: int | None = None,
    ) -> None:
        self.max_nodes = max_nodes
        self.provision_polls = provision_polls
        self.script = script
        self.vcpu_quota = vcpu_quota
        self.nodes: dict[str, int] = {}
        self.jobs: dict[str, FakeJob] = {}
        self._polls: dict[str, int] = {}
        self.published: dict[tuple[str, int], ModelVersion] = {}

    def cluster_for(self, compute: ComputeSpec) -> ClusterSpec:
        return cluster_spec(
            compute,
            name=f"fake-{compute.profile}",
            vm_size=compute.vm_size or "Fake_GPU",
            max_nodes=self.max_nodes,
            placement="serverless" if compute.profile.startswith("serverless") else "cluster",
            vm_family=self.VM_FAMILY,
            vcpus_per_node=self.VCPUS_PER_NODE,
        )

    def ensure_cluster(self, spec: ClusterSpec) -> int:
        if spec.serverless:
            return spec.nodes
        polls = self._polls[spec.name] = self._polls.get(spec.name, 0) + 1
        if polls > self.provision_polls:
            self.nodes[spec.name] = max(self.nodes.get(spec.name, 0), spec.nodes)
        return self.nodes.get(spec.name, 0)

    def quota(self, spec: ClusterSpec) -> Quota | None:
        """Cluster nodes held, and the nodes of serverless jobs not finished, against `vcpu_quota`."""
        if self.vcpu_quota is None:
            return None
        serverless = sum(
            j.submission.cluster.nodes
            for j in self.jobs.values()
            if j.submission.cluster.serverless and not j.phase.is_final
        )
        used = (sum(self.nodes.values()) + serverless) * self.VCPUS_PER_NODE
        return Quota(self.VM_FAMILY, used=used, limit=self.vcpu_quota)

    def submit(self, job: JobSubmission) -> str:
        self.jobs.setdefault(job.name, FakeJob(job, list(self.script)))
        return job.name

    def observe(self, backend_job_id: str) -> JobObservation:
        job = self.jobs.get(backend_job_id)
        if job is None:
            return JobObservation(JobPhase.FAILED, "NotFound", f"fake job {backend_job_id} does not exist")
        phase = job.phase
        if len(job.phases) > 1 and not job.canceled:
            job.phases.pop(0)  # each look moves the scripted job one step on
        failed = phase is JobPhase.FAILED
        return JobObservation(
            phase, phase.value, "scripted failure" if failed else "", preempted=failed and job.preempted
        )

    def phase_of(self, status: str) -> JobPhase:
        """The fake's status words are the phases' own values (`observe` reports them so)."""
        return next((phase for phase in JobPhase if phase.value == status), JobPhase.UNKNOWN)

    def preempt(self, backend_job_id: str) -> None:
        """Test hook: the job's low-priority nodes are taken back."""
        job = self.jobs[backend_job_id]
        job.phases, job.preempted = [JobPhase.FAILED], True

    def cancel(self, backend_job_id: str) -> None:
        job = self.jobs.get(backend_job_id)
        if job is not None and not job.phase.is_final:
            job.canceled = True

    def scale_to_zero(self, cluster: str) -> None:
        self.nodes[cluster] = 0
        self._polls.pop(cluster, None)

    def cluster_nodes(self, cluster: str) -> int:
        return self.nodes.get(cluster, 0)

    def publish_model(self, model: ModelVersion) -> None:
        self.published[(model.name, model.version)] = model

"""The compute port's contract: the same scenarios on every backend, under each distribution (issues 10, 26).

Three backends pass them: the scripted `FakeComputeBackend`, the `LocalBackend` (real supervisor
processes and real `horovodrun` or `torchrun` on this machine, data on Azurite) and the
`AzureMLBackend` (the real `MLClient` over the HTTP-level fake of Azure ML); each runs every
scenario with Horovod and with PyTorch DDP jobs. What only a test can do to a backend (let time
pass, decide how a job ends, take its nodes back, see how it launched a job) is a small driver per
backend below; the scenarios speak to the backend through the port alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import psutil
import pytest

from aztrain.adapters.compute.azureml import AzureMLBackend, connect
from aztrain.adapters.compute.local.backend import LocalBackend, job_processes
from aztrain.adapters.memory import FakeComputeBackend
from aztrain.domain.layout import backend_job_name, run_output_prefix, snapshot_blob
from aztrain.domain.manifest import ComputeSpec, Distribution
from aztrain.domain.records import BlobInfo, ClusterSpec, JobObservation, JobPhase, JobSubmission
from aztrain.domain.retrain import Snapshot
from aztrain.service.ports import ComputeBackend
from aztrain.service.settings import Settings
from tests.e2e.conftest import wait_for
from tests.fakes.aml_service import PROVISION_SECONDS, FakeAzureML, FakeCredential
from tests.unit.test_azureml_backend import workspace_settings

#: How a scripted job ends: runs to completion, fails, or keeps running until stopped.
Outcome = Literal["complete", "fail", "long"]
#: Phases in the order a job may pass through them; a job never goes back to an earlier one.
ORDER = {JobPhase.PENDING: 0, JobPhase.RUNNING: 1, JobPhase.STOPPING: 2}
COMPUTE = ComputeSpec(profile="gpu-small", nodes=1, processes_per_node=1, priority="low")
#: The same on serverless nodes (spot: priority low), which come with the job and go with it.
SERVERLESS = ComputeSpec(profile="serverless-t4", nodes=1, processes_per_node=1, priority="low")
JOB = "contract"
RUN_ID = "8232054399990-c0ffee"


class Driver(Protocol):
    """What a scenario may do to a backend beyond the port: the test's hand on the world behind it."""

    @property
    def backend(self) -> ComputeBackend: ...

    #: The nodes the scenarios ask for: a cluster profile's, or a serverless one's.
    compute: ComputeSpec

    #: Polling: real time for a real backend; a scripted world moves on each `tick` instead.
    timeout: float
    interval: float

    def submission(self, spec: ClusterSpec, run_id: str, outcome: Outcome, attempt: int = 1) -> JobSubmission: ...

    def tick(self) -> None:
        """Let time pass and scripted jobs move one step on."""
        ...

    def preempt(self, job_id: str) -> None:
        """Take the running job's nodes back, as a low-priority eviction does."""
        ...

    def jobs_created(self) -> int: ...

    def launched_as(self, job_id: str) -> Distribution:
        """The distribution whose launcher the backend started the (running) job's processes with."""
        ...


def submission(
    spec: ClusterSpec,
    run_id: str,
    attempt: int,
    args: dict[str, Any],
    distribution: Distribution,
    snapshot_id: str = "snap-contract",
) -> JobSubmission:
    return JobSubmission(
        name=backend_job_name(run_id, attempt),
        run_id=run_id,
        job=JOB,
        cluster=spec,
        entrypoint="trainer.train",
        args=args,
        data_container="datasets",
        data_prefix=f"{JOB}/",
        snapshot=snapshot_blob(snapshot_id),
        output_container="runs",
        output_prefix=run_output_prefix(JOB, run_id),
        max_runtime_seconds=600,
        snapshot_id=snapshot_id,
        manifest_hash="c" * 64,
        distribution=distribution,
    )


# ----------------------------------------------------------------------------- the scripted fake
@dataclass
class FakeDriver:
    """`FakeComputeBackend`: each look at a job moves it one step along the script its outcome names."""

    distribution: Distribution
    compute: ComputeSpec = COMPUTE
    backend: FakeComputeBackend = field(default_factory=lambda: FakeComputeBackend(vcpu_quota=64))
    timeout: float = 5.0
    interval: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    SCRIPTS = {
        "complete": [JobPhase.PENDING, JobPhase.RUNNING, JobPhase.COMPLETED],
        "fail": [JobPhase.PENDING, JobPhase.RUNNING, JobPhase.FAILED],
        "long": [JobPhase.PENDING, JobPhase.RUNNING],
    }

    def submission(self, spec: ClusterSpec, run_id: str, outcome: Outcome, attempt: int = 1) -> JobSubmission:
        job = submission(spec, run_id, attempt, {}, self.distribution)
        self.outcomes[job.name] = outcome
        return job

    def tick(self) -> None:
        for name, job in self.backend.jobs.items():
            if name in self.outcomes:  # the job exists now: script it once
                job.phases = list(self.SCRIPTS[self.outcomes.pop(name)])

    def preempt(self, job_id: str) -> None:
        self.backend.preempt(job_id)

    def jobs_created(self) -> int:
        return len(self.backend.jobs)

    def launched_as(self, job_id: str) -> Distribution:
        return self.backend.jobs[job_id].submission.distribution


# ------------------------------------------------------------------- Azure ML over its HTTP fake
@dataclass
class AzureMLDriver:
    """`AzureMLBackend` on the fake service: each tick is a minute of the service's time and one status step."""

    fake: FakeAzureML
    distribution: Distribution
    compute: ComputeSpec = COMPUTE
    backend: AzureMLBackend = field(init=False)
    timeout: float = 30.0
    interval: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)

    STEPS = ["NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"]

    def __post_init__(self) -> None:
        settings = workspace_settings()
        client = connect(settings, credential=FakeCredential(), transport=self.fake.transport())
        self.backend = AzureMLBackend(settings, client=client)

    def submission(self, spec: ClusterSpec, run_id: str, outcome: Outcome, attempt: int = 1) -> JobSubmission:
        job = submission(spec, run_id, attempt, {"epochs": 1}, self.distribution)
        self.outcomes[job.name] = outcome
        return job

    def tick(self) -> None:
        self.fake.advance(PROVISION_SECONDS)  # clusters provision, idle nodes go, cancels land
        for name, job in self.fake.jobs.items():
            if job.status not in self.STEPS[:-1]:
                continue  # finished, or stopping: Azure ML moves it on by itself
            next_status = self.STEPS[self.STEPS.index(job.status) + 1]
            outcome = self.outcomes.get(name, "complete")
            if outcome == "long" and job.status == "Running":
                continue
            if outcome == "fail" and next_status == "Finalizing":
                self.fake.fail(name, "UserError", "Execution failed. User process 'python' exited with status code 2.")
            else:
                self.fake.set_status(name, next_status)

    def preempt(self, job_id: str) -> None:
        self.fake.preempt(job_id)

    def jobs_created(self) -> int:
        return len(self.fake.jobs)

    def launched_as(self, job_id: str) -> Distribution:
        """From the job Azure ML was sent: an MPI job runs mpirun (Horovod), a PyTorch job starts the DDP ranks."""
        kind = self.fake.jobs[job_id].resource["properties"]["distribution"]["distributionType"]
        return {"Mpi": "horovod", "PyTorch": "pytorch"}[kind]  # type: ignore[return-value]


# --------------------------------------------------------------------- this machine, for real
@dataclass
class LocalDriver:
    """`LocalBackend`: real supervisors and `horovodrun` or `torchrun` on the digits data in Azurite; time is real."""

    backend: LocalBackend
    state_dir: Path
    snapshots: dict[Outcome, str]  # the id of the data snapshot a job of each outcome reads
    distribution: Distribution
    compute: ComputeSpec = COMPUTE
    timeout: float = 120.0
    interval: float = 0.2

    def submission(self, spec: ClusterSpec, run_id: str, outcome: Outcome, attempt: int = 1) -> JobSubmission:
        args = {"epochs": 10_000 if outcome == "long" else 1}
        return submission(spec, run_id, attempt, args, self.distribution, self.snapshots[outcome])

    def tick(self) -> None:
        """Nothing to do: the supervisors and the simulated nodes move on in real time."""

    def preempt(self, job_id: str) -> None:
        """The trainer's own preemption path: its workers get the SIGTERM an evicted node's processes get."""

        def training() -> bool:  # a SIGTERM before the trainer's handler is installed is a plain kill
            log = self.state_dir / "jobs" / job_id / "driver.log"
            return log.is_file() and b"epoch 1/" in log.read_bytes()

        wait_for(training, timeout=self.timeout, what=f"the trainers of {job_id} to finish an epoch")
        for worker in self._workers(job_id):
            with contextlib.suppress(psutil.Error):
                worker.send_signal(signal.SIGTERM)

    def jobs_created(self) -> int:
        return sum(1 for folder in (self.state_dir / "jobs").iterdir() if folder.is_dir())

    def launched_as(self, job_id: str) -> Distribution:
        """From the training processes themselves: each launcher leaves its own mark in their environment."""
        environments = [worker.environ() for worker in self._workers(job_id)]
        if all("HOROVOD_RANK" in env for env in environments):
            return "horovod"
        assert all(
            {"TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"} <= env.keys() for env in environments
        )
        return "pytorch"

    def _workers(self, job_id: str) -> list[psutil.Process]:
        """The job's training processes (`python -m trainer.train`), not its supervisor, launcher or shells."""

        def found() -> list[psutil.Process]:
            workers = []
            for proc in job_processes(job_id):
                with contextlib.suppress(psutil.Error):
                    if proc.cmdline()[1:3] == ["-m", "trainer.train"]:
                        workers.append(proc)
            return workers

        return wait_for(found, timeout=self.timeout, what=f"the trainers of {job_id}", interval=self.interval)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from trainer.digits import export_digits

    return export_digits(tmp_path_factory.mktemp("digits")).read_bytes()


def local_driver(
    request: pytest.FixtureRequest, tmp_path: Path, distribution: Distribution, compute: ComputeSpec
) -> Iterator[LocalDriver]:
    connection = request.getfixturevalue("azurite")
    data = request.getfixturevalue("data_store_on_azurite")
    data.write("datasets", f"{JOB}/digits.npz", request.getfixturevalue("digits"))
    digits = Snapshot("datasets", f"{JOB}/", tuple(data.list("datasets", f"{JOB}/")))
    # A failing job's snapshot lists a blob that is not there: its supervisor fails it, naming the blob.
    missing = Snapshot("datasets", f"{JOB}/", (BlobInfo(f"{JOB}/missing.npz", size=1, etag='"0x0"'),))
    for snapshot in (digits, missing):
        data.write("runs", snapshot_blob(snapshot.id), json.dumps(snapshot.to_json()).encode())
    settings = Settings(
        storage_connection_string=connection,
        local_state_dir=tmp_path / "local",
        local_provision_seconds=0.5,
        local_cluster_nodes=2,
        local_max_slots=2,
        local_quota=json.dumps({"standardNCASv3_T4Family": 64}),
    )
    backend = LocalBackend(settings, child_env={**os.environ, "AZTRAIN_STORAGE_CONNECTION_STRING": connection})
    driver = LocalDriver(
        backend,
        settings.local_state_dir,
        {"complete": digits.id, "long": digits.id, "fail": missing.id},
        distribution,
        compute,
    )
    yield driver
    jobs = [folder.name for folder in (settings.local_state_dir / "jobs").iterdir()]
    for job in jobs:
        backend.cancel(job)
    # Nothing a scenario started outlives it.
    wait_for(lambda: not any(job_processes(job) for job in jobs), timeout=30, what="no process of the jobs left")


@pytest.fixture(
    params=[
        ("fake", "horovod"),
        ("fake", "pytorch"),
        pytest.param(("local", "horovod"), marks=[pytest.mark.horovod, pytest.mark.azurite]),
        pytest.param(("local", "pytorch"), marks=pytest.mark.azurite),
        ("azureml", "horovod"),
        ("azureml", "pytorch"),
        # Serverless placement, on every backend (Horovod: the launcher is the distribution's business).
        ("fake", "horovod", "serverless"),
        pytest.param(("local", "horovod", "serverless"), marks=[pytest.mark.horovod, pytest.mark.azurite]),
        ("azureml", "horovod", "serverless"),
    ],
    ids="-".join,
)
def driver(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Driver]:
    backend, distribution, *placement = request.param
    compute = SERVERLESS if placement else COMPUTE
    if backend == "fake":
        yield FakeDriver(distribution, compute)
    elif backend == "local":
        yield from local_driver(request, tmp_path, distribution, compute)
    else:
        monkeypatch.setattr("aztrain.adapters.compute.aml_quota.READ_SECONDS", 0.0)  # the fake's time is not real
        service = FakeAzureML()
        with service.patch_blob_uploads():
            yield AzureMLDriver(service, distribution, compute)
        assert service.unhandled == []


# ------------------------------------------------------------------------------------ helpers
def ready_cluster(driver: Driver) -> ClusterSpec:
    """The scenario's cluster, provisioned: what the control plane waits for before it submits."""
    spec = driver.backend.cluster_for(driver.compute)

    def ready() -> bool:
        driver.tick()
        return driver.backend.ensure_cluster(spec) >= spec.nodes

    wait_for(ready, timeout=driver.timeout, what=f"cluster {spec.name} ready", interval=driver.interval)
    return spec


def watch(driver: Driver, job_id: str, until: Callable[[JobObservation], bool], what: str) -> list[JobObservation]:
    """Observe the job until `until` holds; every observation on the way, the last one included."""
    seen: list[JobObservation] = []

    def look() -> bool:
        driver.tick()
        seen.append(driver.backend.observe(job_id))
        return until(seen[-1])

    wait_for(look, timeout=driver.timeout, what=f"{job_id} {what}", interval=driver.interval)
    return seen


def final(observation: JobObservation) -> bool:
    return observation.phase.is_final


def started(driver: Driver, outcome: Outcome, run_id: str = RUN_ID) -> str:
    job = driver.submission(ready_cluster(driver), run_id, outcome)
    return driver.backend.submit(job)


# ---------------------------------------------------------------------------------- scenarios
def test_submit_returns_the_job_id_and_the_job_is_under_way(driver):
    job = driver.submission(ready_cluster(driver), RUN_ID, "complete")
    job_id = driver.backend.submit(job)
    assert job_id == job.name
    assert driver.backend.observe(job_id).phase in (JobPhase.PENDING, JobPhase.RUNNING)


def test_a_duplicate_submit_returns_the_same_job_and_starts_nothing_new(driver):
    job = driver.submission(ready_cluster(driver), RUN_ID, "complete")
    assert driver.backend.submit(job) == driver.backend.submit(job) == job.name
    assert driver.jobs_created() == 1


def test_the_job_is_launched_as_its_distribution_asks(driver):
    job = driver.submission(ready_cluster(driver), RUN_ID, "long")
    job_id = driver.backend.submit(job)
    watch(driver, job_id, lambda o: o.phase is JobPhase.RUNNING, "running")
    assert driver.launched_as(job_id) == job.distribution
    driver.backend.cancel(job_id)
    assert watch(driver, job_id, final, "canceled")[-1].phase is JobPhase.CANCELED


def test_a_job_moves_forward_only_and_completes(driver):
    job_id = started(driver, "complete")
    seen = watch(driver, job_id, final, "finished")
    phases = [o.phase for o in seen]
    assert phases[-1] is JobPhase.COMPLETED and seen[-1].error == "", seen[-1]
    assert set(phases[:-1]) <= set(ORDER), phases
    ranks = [ORDER[p] for p in phases[:-1]]
    assert ranks == sorted(ranks), phases  # never back to an earlier phase


def test_the_backend_reads_its_own_status_words_as_its_observations_do(driver):
    """Status events carry the backend's own words; the backend, not the trigger, maps them."""
    job_id = started(driver, "complete")
    last = watch(driver, job_id, final, "finished")[-1]
    assert driver.backend.phase_of(last.status) is last.phase is JobPhase.COMPLETED
    assert driver.backend.phase_of("NoSuchStatus") is JobPhase.UNKNOWN


def test_a_failed_job_says_why(driver):
    job_id = started(driver, "fail")
    last = watch(driver, job_id, final, "finished")[-1]
    assert last.phase is JobPhase.FAILED and last.error and not last.preempted


def test_cancel_stops_a_running_job(driver):
    job_id = started(driver, "long")
    watch(driver, job_id, lambda o: o.phase is JobPhase.RUNNING, "running")
    driver.backend.cancel(job_id)
    after = [o.phase for o in watch(driver, job_id, final, "canceled")]
    assert after[-1] is JobPhase.CANCELED
    # On its way it may still look running (finishing its outputs), or stopping, and never runs again once stopping.
    assert set(after[:-1]) <= {JobPhase.RUNNING, JobPhase.STOPPING}, after
    if JobPhase.STOPPING in after:
        assert JobPhase.RUNNING not in after[after.index(JobPhase.STOPPING) :], after


def test_cancel_of_a_finished_job_changes_nothing(driver):
    job_id = started(driver, "fail")  # the quickest way to a finished job on every backend
    before = watch(driver, job_id, final, "finished")[-1]
    driver.backend.cancel(job_id)
    driver.tick()
    assert driver.backend.observe(job_id) == before


def test_a_preempted_job_fails_as_preempted_and_its_next_attempt_runs(driver):
    job_id = started(driver, "long")
    watch(driver, job_id, lambda o: o.phase is JobPhase.RUNNING, "running")
    driver.preempt(job_id)
    last = watch(driver, job_id, final, "finished")[-1]
    assert (last.phase, last.preempted) == (JobPhase.FAILED, True) and last.error
    spec = driver.backend.cluster_for(driver.compute)
    retry = driver.backend.submit(driver.submission(spec, RUN_ID, "complete", attempt=2))
    assert retry == backend_job_name(RUN_ID, 2) != job_id
    assert watch(driver, retry, final, "finished")[-1].phase is JobPhase.COMPLETED


def test_a_job_the_backend_does_not_know_is_failed_with_a_reason(driver):
    observed = driver.backend.observe(backend_job_name("8999999999999-ffffff", 1))
    assert observed.phase is JobPhase.FAILED and observed.error


def test_scale_to_zero_releases_every_node(driver):
    if driver.compute.profile.startswith("serverless"):
        pytest.skip("serverless nodes have no cluster to scale: the quota scenario sees them go with the job")
    job_id = started(driver, "long")
    spec = driver.backend.cluster_for(driver.compute)
    watch(driver, job_id, lambda o: o.phase is JobPhase.RUNNING, "running")
    assert driver.backend.cluster_nodes(spec.name) > 0
    driver.backend.cancel(job_id)  # the cluster's last job ends, as when the control plane scales down
    watch(driver, job_id, final, "finished")
    driver.backend.scale_to_zero(spec.name)
    wait_for(
        lambda: driver.tick() or driver.backend.cluster_nodes(spec.name) == 0,
        timeout=driver.timeout,
        what=f"{spec.name} at zero nodes",
        interval=driver.interval,
    )


def test_a_jobs_nodes_count_against_quota_while_it_works_and_are_released_after(driver):
    spec = ready_cluster(driver)
    assert driver.backend.quota(spec) is not None  # each driver's world sets a quota for the T4 family
    job_id = driver.backend.submit(driver.submission(spec, RUN_ID, "long"))
    watch(driver, job_id, lambda o: o.phase is JobPhase.RUNNING, "running")

    def used() -> int:
        driver.tick()
        quota = driver.backend.quota(spec)
        assert quota is not None
        return quota.used

    wait_for(lambda: used() >= spec.nodes * spec.vcpus_per_node, timeout=driver.timeout, what="the job's vCPUs in use")
    driver.backend.cancel(job_id)
    watch(driver, job_id, final, "finished")
    if not spec.serverless:  # a cluster's nodes stay until it scales down; serverless ones go with the job
        driver.backend.scale_to_zero(spec.name)
    wait_for(lambda: used() == 0, timeout=driver.timeout, what="the job's vCPUs released", interval=driver.interval)

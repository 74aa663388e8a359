"""Races: many handlers on the same run, job and cluster at once, in threads and in processes.

Every write is ETag-conditional; a handler that loses a race re-reads and re-decides, and one that
loses too often raises `ConcurrencyError` so Event Grid delivers it again (here: the caller retries).
Nothing may be lost, no run duplicated, and no cluster scaled down while a job runs on it.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.domain.errors import ConcurrencyError
from aztrain.domain.layout import backend_job_name
from aztrain.domain.records import JobPhase
from aztrain.domain.runs import RunState
from aztrain.service.bootstrap import build_control_store, build_data_store
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.settings import Settings
from tests.clock import Clock
from tests.reliability.conftest import assert_converged, drop_manifest, manifest, settle

T = TypeVar("T")


def redelivered(handler: Callable[[], T]) -> T:
    """Event Grid: a handler that raised (here, a race lost five times over) is delivered again."""
    for _ in range(20):
        try:
            return handler()
        except ConcurrencyError:
            continue
    raise AssertionError("a handler lost its race 20 deliveries in a row")


def all_at_once(handlers: list[Callable[[], object]]) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(redelivered, handler) for handler in handlers]:
            future.result()  # anything but a lost race fails the test


def test_one_job_submitted_from_every_way_in_at_once_makes_one_run(plane: ControlPlane) -> None:
    event = drop_manifest(plane, "race-job")
    text = manifest("race-job")
    handlers: list[Callable[[], object]] = [lambda: plane.on_blob_created(event) for _ in range(4)]
    handlers += [lambda i=i: plane.submit(text, trigger="http", cause=f"req-{i}", source="http") for i in range(4)]
    handlers += [
        lambda i=i: plane.on_blob_created(BlobEvent(id=f"other-{i}", container="jobs", name=event.name))
        for i in range(4)
    ]
    random.Random(3).shuffle(handlers)
    all_at_once(handlers)
    settle(plane)
    assert_converged(plane, ["race-job"])


def test_status_news_and_reconciles_on_one_run_at_once_lose_nothing(plane: ControlPlane) -> None:
    plane.on_blob_created(drop_manifest(plane, "race-run"))  # its delivery takes the run's first steps
    (run,) = plane.store.find_runs(job="race-run")
    assert run.state is RunState.SUBMITTED
    job_id = backend_job_name(run.id, 1)
    news = [JobPhase.PENDING, JobPhase.RUNNING, JobPhase.COMPLETED] * 3
    handlers: list[Callable[[], object]] = [
        lambda p=p, i=i: plane.on_job_status(job_id, p, cause=f"event:{i}") for i, p in enumerate(news)
    ]
    handlers += [plane.reconcile, plane.reconcile, lambda: plane.advance(run.id)]
    random.Random(5).shuffle(handlers)
    all_at_once(handlers)
    settle(plane)
    assert_converged(plane, ["race-run"])


def test_runs_starting_and_ending_on_one_cluster_at_once_never_scale_it_down_under_a_job(plane: ControlPlane) -> None:
    backend = plane.backend
    assert isinstance(backend, FakeComputeBackend)
    scaled_under: list[str] = []
    scale_to_zero = backend.scale_to_zero

    def watched_scale_to_zero(cluster: str) -> None:
        live = [n for n, j in backend.jobs.items() if j.submission.cluster.name == cluster and not j.phase.is_final]
        scaled_under.extend(live)
        scale_to_zero(cluster)

    backend.scale_to_zero = watched_scale_to_zero  # type: ignore[method-assign]
    jobs = [f"race-cluster-{i}" for i in range(6)]
    events = [drop_manifest(plane, job) for job in jobs]
    # Half start while the other half finish, all on the one cluster of the default profile.
    for event in events[:3]:
        plane.on_blob_created(event)
    plane.reconcile()  # their runs are made and started
    handlers: list[Callable[[], object]] = [lambda e=e: plane.on_blob_created(e) for e in events[3:]]
    handlers += [plane.reconcile] * 6
    all_at_once(handlers)
    settle(plane)
    assert_converged(plane, jobs)
    assert scaled_under == []


def _deliver_in_a_process(settings: Settings, event: BlobEvent, text: bytes, n: int) -> str:
    """A separate Functions worker: its own clients, its own backend (whose clusters never come up)."""
    plane = ControlPlane(
        settings=settings,
        store=build_control_store(settings),
        data=build_data_store(settings),
        backend=FakeComputeBackend(provision_polls=10**6),  # submitting is left to the main process
        now=Clock(),
    )
    if n % 2:  # the blob's event, as the queue trigger of another instance takes a redelivery of it
        redelivered(lambda: plane.on_blob_created(event))
        (run,) = plane.store.find_runs(job="race-procs")
    else:
        submitted = redelivered(lambda: plane.submit(text, trigger="http", cause=f"p-{n}", source="http"))
        run = submitted.run
    return run.id


def test_workers_in_separate_processes_submitting_one_job_make_one_run(
    plane: ControlPlane, azurite_settings: Settings
) -> None:
    event = drop_manifest(plane, "race-procs")
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        ids = pool.starmap(
            _deliver_in_a_process, [(azurite_settings, event, manifest("race-procs"), n) for n in range(8)]
        )
    assert len(set(ids)) == 1
    settle(plane)
    assert_converged(plane, ["race-procs"])

"""At-least-once, out-of-order delivery: every event 1-3 times, shuffled and late, status news out of order.

Whatever the order, each accepted job makes exactly one run with one backend job, and no run
ever moves backwards: late news is recorded as ignored, never applied.
"""

from __future__ import annotations

import random
import uuid

import pytest

from aztrain.domain.layout import backend_job_name
from aztrain.domain.records import JobPhase
from aztrain.service.facade import ControlPlane
from tests.integration.test_http_api import Api
from tests.reliability.conftest import (
    assert_converged,
    blob_created,
    drop_manifest,
    enqueue,
    post_events,
    run_status_changed,
    settle,
)

JOBS = [f"deliver-{i}" for i in range(5)]
#: What an Azure ML job reports on its way to done, in order; Event Grid may bring it in any order.
NEWS = (JobPhase.PENDING, JobPhase.RUNNING, JobPhase.COMPLETED)


@pytest.mark.parametrize("seed", [1, 2])
def test_duplicated_shuffled_late_events_make_one_run_per_job_and_never_move_backwards(
    plane: ControlPlane, seed: int
) -> None:
    rng = random.Random(seed)
    events = [drop_manifest(plane, job) for job in JOBS]
    deliveries = [event for event in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    for i, event in enumerate(deliveries):
        plane.on_blob_created(event)
        if i % 3 == 0:  # the reconciler's timer fires between deliveries: some events arrive late
            plane.reconcile()
    plane.reconcile()  # and once after the last

    runs = [plane.store.find_runs(job=job)[0] for job in JOBS]
    news = [(run, phase) for run in runs for phase in NEWS for _ in range(rng.randint(1, 3))]
    rng.shuffle(news)
    for i, (run, phase) in enumerate(news):
        plane.on_job_status(backend_job_name(run.id, 1), phase, cause=f"event:{seed}-{i}")
        if i % 4 == 0:
            plane.reconcile()
    settle(plane)

    assert_converged(plane, JOBS)
    for event in events:  # delivered again after everything finished: still nothing new
        plane.on_blob_created(event)
    settle(plane)
    assert_converged(plane, JOBS)


def test_status_news_after_a_run_finished_changes_nothing(plane: ControlPlane) -> None:
    event = drop_manifest(plane, "late-news")
    plane.on_blob_created(event)
    settle(plane)
    (run,) = assert_converged(plane, ["late-news"])
    for phase in reversed(NEWS):
        plane.on_job_status(backend_job_name(run.id, 1), phase, cause="event:late")
    history = plane.store.history(run.id)
    (run,) = assert_converged(plane, ["late-news"])
    assert len(plane.store.history(run.id)) == len(history)


def test_through_the_dev_hosts_queue_duplicated_shuffled_events_make_one_run_each(stack: Api) -> None:
    rng, plane = random.Random(7), stack.service
    jobs = [f"hook-{uuid.uuid4().hex[:6]}-{i}" for i in range(4)]
    events = [blob_created(drop_manifest(plane, job)) for job in jobs]
    deliveries = [event for event in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    enqueue(stack, *deliveries)  # the queue trigger takes them in batches and runs them concurrently

    news = [
        run_status_changed(backend_job_name(plane.store.find_runs(job=job)[0].id, 1), status)
        for job in jobs
        for status in ("Queued", "Running", "Completed")
        for _ in range(rng.randint(1, 2))
    ]
    rng.shuffle(news)
    for event in news:
        assert post_events(stack, "on_run_status_changed", [event]).status == 202
    settle(plane)

    assert_converged(plane, jobs)

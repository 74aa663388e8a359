"""Crashes at every step boundary: after redelivery and the reconciler, every run converges.

A named fault point (`aztrain.service.faults`) raises where a crash would split two writes: after the
job row and before the run row, between a new run's index copy and its row, after the backend
submit and before it is recorded, around the scale-down, between two runs of a reconcile, after
a retraining window named its run. Event Grid redelivers what raised and the reconciler keeps
running; every run must end with exactly one backend job, a complete history and the cluster
back at zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from aztrain.domain.records import JobPhase
from aztrain.domain.runs import ACTIVE_STATES, RunState
from aztrain.service import faults
from aztrain.service.facade import BlobEvent, ControlPlane
from tests.reliability.conftest import assert_converged, backend_jobs, drop_manifest, manifest

JOBS = ("crash-a", "crash-b")


def crash_at(points: set[str], times: int = 1) -> Callable[[str], None]:
    """A hook that crashes at each of `points` the first `times` times it is reached."""
    reached: Counter[str] = Counter()

    def hook(point: str) -> None:
        if point in points and reached[point] < times:
            reached[point] += 1
            raise faults.InjectedFault(point)

    return hook


def deliver(plane: ControlPlane, event: BlobEvent) -> None:
    """Event Grid: a delivery that raised is delivered again."""
    for _ in range(10):
        try:
            plane.on_blob_created(event)
            return
        except faults.InjectedFault:
            continue
    raise AssertionError(f"event {event.id} never succeeded")


def keep_reconciling(plane: ControlPlane, rounds: int = 12) -> None:
    """The reconciler's timer: a round that crashed is followed by the next, until a whole round finds nothing to do."""
    for _ in range(rounds):
        try:
            plane.reconcile()
        except faults.InjectedFault:
            continue
        pending = any(plane.store.pending_arrivals(j.name) for j in plane.store.list_jobs())
        if not pending and not plane.store.find_runs(states=ACTIVE_STATES):
            return


@pytest.mark.parametrize("point", [p for p in faults.POINTS if not p.startswith("retraining.")])
def test_a_crash_at_each_step_boundary_converges_to_one_backend_job_per_run(plane: ControlPlane, point: str) -> None:
    events = [drop_manifest(plane, job) for job in JOBS]
    reached: list[str] = []
    with faults.injected(lambda p: reached.append(p)), faults.injected(crash_at({point}, times=2)):
        for event in events:
            deliver(plane, event)
        keep_reconciling(plane)
        for event in events:  # a late redelivery after all that changes nothing
            deliver(plane, event)
    assert_converged(plane, JOBS)


def test_every_point_is_reached_by_a_run_from_manifest_to_scale_down(plane: ControlPlane) -> None:
    reached: set[str] = set()
    job = "crash-all"
    with faults.injected(reached.add):
        deliver(plane, drop_manifest(plane, job, retrain=True))
        keep_reconciling(plane)
        plane.data.write("datasets", f"{job}/part-1.csv", b"3,4\n")
        plane.on_blob_created(BlobEvent(id="data-1", container="datasets", name=f"{job}/part-1.csv", etag='"1"'))
        keep_reconciling(plane)
    assert reached == set(faults.POINTS)


def test_every_point_crashing_at_once_still_converges(plane: ControlPlane) -> None:
    events = [drop_manifest(plane, job) for job in JOBS]
    with faults.injected(crash_at(set(faults.POINTS), times=1)):
        for event in events:
            deliver(plane, event)
        keep_reconciling(plane)
    assert_converged(plane, JOBS)


def test_a_crash_after_a_retraining_window_names_its_run_launches_that_run_once(plane: ControlPlane) -> None:
    job = "crash-retrain"
    deliver(plane, drop_manifest(plane, job, retrain=True))
    keep_reconciling(plane)
    with faults.injected(crash_at({"retraining.after-window-claim"}, times=2)):
        for n in (1, 2):
            blob = f"{job}/part-{n}.csv"
            plane.data.write("datasets", blob, b"3,4\n")
            plane.on_blob_created(BlobEvent(id=f"d{n}", container="datasets", name=blob, etag=f'"{n}"'))
        keep_reconciling(plane)
    runs = plane.store.find_runs(job=job)
    assert [r.trigger for r in runs] == ["data", "manifest"]  # newest first: one retraining run, not two
    assert all(r.state is RunState.COMPLETED and len(backend_jobs(plane, r)) == 1 for r in runs)
    assert not plane.store.pending_arrivals(job)


def test_a_crash_between_submit_and_record_leaves_one_backend_job_even_if_it_already_ran(plane: ControlPlane) -> None:
    """The job the lost submit started is found again by its derived name, however far it got."""
    backend = plane.backend
    with faults.injected(crash_at({"progress.after-submit"})):  # in the first steps the delivery takes
        deliver(plane, drop_manifest(plane, "crash-submit"))
    (run,) = plane.store.find_runs(job="crash-submit")
    assert run.state is RunState.PROVISIONING
    (job_name,) = backend_jobs(plane, run)
    backend.jobs[job_name].phases = [JobPhase.COMPLETED]  # it finished while nobody recorded it
    keep_reconciling(plane)
    assert_converged(plane, ["crash-submit"])


def test_a_submit_that_crashed_after_indexing_its_run_is_finished_by_the_reconciler(plane: ControlPlane) -> None:
    plane.data.write("datasets", "orphan/part-0.csv", b"1,2\n")
    with faults.injected(crash_at({"runs.after-index"})), pytest.raises(faults.InjectedFault):
        plane.submit(manifest("orphan"), trigger="http", cause="r", source="http")
    assert plane.store.find_runs(job="orphan") == []  # its caller saw an error, and may never retry
    keep_reconciling(plane)
    (run,) = assert_converged(plane, ["orphan"])
    assert run.cause == "r"

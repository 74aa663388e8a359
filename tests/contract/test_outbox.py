"""Outbound run events, on the in-memory fakes and on real Table Storage: never lost, never invented."""

from dataclasses import replace

import pytest

from aztrain.adapters.memory import RecordingEventSink
from aztrain.domain.records import JobPhase
from aztrain.domain.runs import RunState
from aztrain.service import faults
from aztrain.service.facade import BlobEvent, ControlPlane
from tests.contract.conftest import MANIFEST, deliver, drive

#: What a run driven to COMPLETED publishes, in order (docs/events.md).
COMPLETED_SEQUENCE = [
    "aztrain.run.accepted",
    "aztrain.run.provisioning",
    "aztrain.run.submitted",
    "aztrain.run.queued",
    "aztrain.run.running",
    "aztrain.run.completed",
    "aztrain.model.registered",
    "aztrain.cluster.scaled_to_zero",
]


@pytest.fixture
def sink(plane: ControlPlane) -> RecordingEventSink:
    recording = RecordingEventSink()
    plane.ctx = replace(plane.ctx, events=recording)
    return recording


def _complete(plane: ControlPlane, cause: str = "evt-1") -> str:
    (run,) = deliver(plane, BlobEvent(id=cause, container="jobs", name="manifests/digits.yaml"))
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b'{"accuracy": 0.97}')
    drive(plane)
    assert plane.get_run(run.id).state is RunState.COMPLETED
    return run.id


@pytest.fixture(autouse=True)
def manifest_blob(plane: ControlPlane) -> None:
    plane.data.write("jobs", "manifests/digits.yaml", MANIFEST)


def test_a_completed_run_publishes_each_recorded_transition_once_in_order(plane, sink):
    run_id = _complete(plane)
    assert [e.type for e in sink.events] == COMPLETED_SEQUENCE
    run_events = [e for e in sink.events if e.type.startswith("aztrain.run.")]
    assert [e.id for e in run_events] == [f"{run_id}:{seq}" for seq in range(1, 7)]
    assert {e.correlation for e in sink.events[:-1]} == {"evt-1"}  # the blob event that started it
    completed = run_events[-1].data
    assert completed["metrics"] == {"accuracy": 0.97} and completed["backend_job_id"]
    assert list(completed["timings"]) == ["accepted", "provisioning", "submitted", "queued", "running", "completed"]
    assert plane.store.unpublished_runs() == []


def test_a_refused_transition_publishes_nothing(plane, sink):
    run_id = _complete(plane)
    published = len(sink.events)
    late = plane.on_job_status(plane.get_run(run_id).backend_job_id, JobPhase.RUNNING, cause="event:late")
    assert late is not None and late.state is RunState.COMPLETED
    drive(plane, 2)
    assert len(sink.events) == published


def test_with_the_topic_down_transitions_record_and_every_event_is_sent_once_it_recovers(plane, sink):
    sink.failing = True
    run_id = _complete(plane)
    assert sink.events == [] and [r.id for r in plane.store.unpublished_runs()] == [run_id]
    sink.failing = False
    plane.reconcile()
    assert [e.type for e in sink.events] == COMPLETED_SEQUENCE
    assert len({e.id for e in sink.events}) == len(sink.events)
    assert plane.store.unpublished_runs() == []
    # Sent late, each still says what its transition left: no snapshot before PROVISIONING, no job before SUBMITTED.
    accepted, provisioning, submitted = (e.data for e in sink.events[:3])
    assert (accepted["snapshot_id"], accepted["cluster"], accepted["timings"].keys()) == ("", "", {"accepted"})
    assert provisioning["snapshot_id"] and provisioning["backend_job_id"] == "" and submitted["backend_job_id"]
    plane.reconcile()
    assert len(sink.events) == len(COMPLETED_SEQUENCE)


def _crash_at(where: str):
    def hook(point: str) -> None:
        if point == where:
            raise faults.InjectedFault(point)

    return faults.injected(hook)


def test_a_crash_between_the_transition_and_the_publish_loses_nothing(plane, sink):
    with _crash_at("publishing.before-publish"):  # in the first steps its delivery takes
        deliver(plane, BlobEvent(id="evt-1", container="jobs", name="manifests/digits.yaml"))
    assert sink.events == []
    (listed,) = plane.store.unpublished_runs()  # a listing: the events themselves stay on the run
    run = plane.store.get_run(listed.id)
    assert run.state is RunState.SUBMITTED and len(run.outbox) == 3  # ACCEPTED, PROVISIONING, SUBMITTED: staged
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b"{}")
    drive(plane)  # the reconciler, in a process that did not crash
    assert [e.type for e in sink.events] == COMPLETED_SEQUENCE


def test_a_crash_after_the_publish_sends_again_under_the_same_ids_and_clears_once(plane, sink):
    with _crash_at("publishing.after-publish"):
        deliver(plane, BlobEvent(id="evt-1", container="jobs", name="manifests/digits.yaml"))
    (listed,) = plane.store.unpublished_runs()
    run = plane.store.get_run(listed.id)
    plane.reconcile()
    ids = [e.id for e in sink.events]
    first = [f"{run.id}:{staged.transition.seq}" for staged in run.outbox]  # sent before the crash
    # And again: at least once, under the same ids, for subscribers to dedupe.
    assert len(first) == 3 and ids[:6] == first + first
    assert sorted(set(ids)) == sorted(f"{run.id}:{seq}" for seq in range(1, plane.get_run(run.id).seq + 1))
    assert plane.store.unpublished_runs() == []


def test_without_a_topic_events_are_recorded_and_not_sent(plane):
    run_id = _complete(plane)
    assert plane.ctx.events is None
    assert plane.store.unpublished_runs() == []
    assert [t.to_state for t in plane.store.history(run_id)][-1] is RunState.COMPLETED

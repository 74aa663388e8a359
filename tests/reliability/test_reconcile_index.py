"""The reconciler decides on copies in the `active` index: a copy left behind its run never misleads it for long.

A run's copy is written after its own row, so a crash between the two (simulated here by writing
an older copy back) leaves the copy behind its run, never ahead. The pass decides on the copy
whether a step could be due, decides again on the run's own row, and repairs the copy.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from aztrain.adapters.memory import FakeComputeBackend, RecordingEventSink
from aztrain.adapters.storage.tables import active_entity
from aztrain.domain.manifest import parse_manifest
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import Settings
from tests.reliability.conftest import assert_converged, manifest, settle

pytestmark = pytest.mark.azurite

JOB = "behind"
CLUSTER = "fake-gpu-small"


def accepted(plane: ControlPlane) -> Run:
    """A run recorded in ACCEPTED, with data to train on."""
    plane.data.write("datasets", f"{JOB}/part-0.csv", b"1,2\n")
    run = Run.create(
        id="8232774399990-beb1d0",
        job=JOB,
        state=RunState.ACCEPTED,
        at=plane.now(),
        trigger="http",
        cause="test",
        spec=parse_manifest(manifest(JOB)),
    )
    return plane.store.add_run(run)


def leave_copy_behind(settings: Settings, older: Run) -> None:
    """What a crash between a run's write and its index write leaves: the index holds an older copy."""
    table = TableServiceClient.from_connection_string(settings.storage_connection_string).get_table_client(
        settings.table_prefix + "active"
    )
    table.upsert_entity(active_entity(older), mode=UpdateMode.REPLACE)


def the_copy(plane: ControlPlane) -> Run:
    (copy,) = plane.store.find_runs(states=ACTIVE_STATES)
    return copy


def test_a_copy_left_behind_by_a_crash_is_repaired_and_the_run_still_advances(plane, azurite_settings):
    backend = plane.backend
    assert isinstance(backend, FakeComputeBackend)
    backend.provision_polls = 2  # the first advance finds no nodes yet, the next does
    provisioning = plane.advance(accepted(plane).id)
    assert provisioning.state is RunState.PROVISIONING
    submitted = plane.advance(provisioning.id)
    assert submitted.state is RunState.SUBMITTED
    leave_copy_behind(azurite_settings, provisioning)

    plane.reconcile()
    run = plane.get_run(submitted.id)
    assert run.state is RunState.QUEUED  # the step was decided on the run's row, not on the copy
    assert (the_copy(plane).state, the_copy(plane).seq) == (run.state, run.seq)
    settle(plane)
    assert_converged(plane, [JOB])
    assert plane.store.find_runs(states=ACTIVE_STATES) == []


def test_a_copy_behind_a_run_with_no_step_due_is_refreshed(plane, azurite_settings):
    backend = plane.backend
    assert isinstance(backend, FakeComputeBackend)
    backend.provision_polls = 10**6  # nodes never come: the run waits in PROVISIONING
    recorded = accepted(plane)
    provisioning = plane.advance(recorded.id)
    leave_copy_behind(azurite_settings, recorded)
    assert the_copy(plane).state is RunState.ACCEPTED

    plane.reconcile()
    assert plane.get_run(recorded.id).seq == provisioning.seq  # no step was due: nothing written
    assert (the_copy(plane).state, the_copy(plane).seq) == (RunState.PROVISIONING, provisioning.seq)


def test_a_finished_run_whose_copy_still_says_provisioning_does_not_hold_its_cluster_up(plane, azurite_settings):
    backend = plane.backend
    assert isinstance(backend, FakeComputeBackend)
    backend.provision_polls = 2
    provisioning = plane.advance(accepted(plane).id)
    settle(plane)
    assert plane.get_run(provisioning.id).state is RunState.COMPLETED
    leave_copy_behind(azurite_settings, provisioning)  # its nodes are gone, so on the copy no step is due

    plane.reconcile()
    assert plane.store.find_runs(states=ACTIVE_STATES) == []
    record = plane.store.get_cluster("fake", CLUSTER)
    assert record is not None and (record.desired_nodes, record.observed_nodes, record.active_runs) == (0, 0, 0)
    assert not any(backend.nodes.values())


def test_a_crash_after_an_outbox_is_cleared_and_before_its_copy_is_refreshed_is_repaired(plane, azurite_settings):
    sink = RecordingEventSink()
    plane.ctx = replace(plane.ctx, events=sink)
    sink.failing = True  # the topic is down: the finished run keeps its events, and its copy, until it is back
    run_id = accepted(plane).id
    settle(plane)
    unpublished = plane.get_run(run_id)
    assert unpublished.state is RunState.COMPLETED and unpublished.outbox
    assert [r.id for r in plane.store.unpublished_runs()] == [run_id]
    assert plane.store.find_runs(states=ACTIVE_STATES) == []  # kept for its events, not listed as active

    sink.failing = False
    plane.reconcile()
    sent = list(sink.events)
    assert sent and plane.store.unpublished_runs() == []
    leave_copy_behind(azurite_settings, unpublished)
    assert [r.id for r in plane.store.unpublished_runs()] == [run_id]

    plane.reconcile()
    assert plane.store.unpublished_runs() == []
    assert sink.events == sent  # the run's own row said nothing waits: nothing is sent twice

"""Blob events through the inbox: the handler records each one in one store call; the reconciler's pass acts on them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.domain.runs import RunState
from aztrain.service.facade import BlobEvent
from aztrain.service.usecases import inbox
from tests.unit.test_reconcile_pass import MANIFEST, plane_with

WATCHING = MANIFEST.format(name="watcher") + "retrain: {on_data_arrival: true}\n"


def test_a_blob_event_costs_the_handler_one_store_call_and_no_blob_read() -> None:
    plane, store = plane_with(FakeComputeBackend(provision_polls=0))
    plane.data.write("jobs", "manifests/one.yaml", MANIFEST.format(name="one").encode())
    reads = plane.data.read

    def no_read(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the handler read a blob")  # a manifest is read by the reconciler's pass

    plane.data.read = no_read  # type: ignore[method-assign]
    plane.on_blob_created(BlobEvent("ev-1", "jobs", "manifests/one.yaml", '"1"', plane.now()))
    plane.on_blob_created(BlobEvent("ev-2", "datasets", "digits/new.npz", '"2"', plane.now()))
    assert dict(store.calls) == {"record_intake": 2}
    plane.data.read = reads  # type: ignore[method-assign]

    plane.reconcile()  # the next pass: the manifest's run is made and taken as far as it can go at once
    (run,) = plane.store.find_runs(job="one")
    assert (run.state, run.cause, run.source) == (RunState.SUBMITTED, "ev-1", "jobs/manifests/one.yaml")
    assert plane.store.intakes(10) == []


def test_the_control_planes_own_writes_are_not_even_recorded() -> None:
    plane, store = plane_with(FakeComputeBackend())
    for container, name in [("runs", "digits/r/outputs/model.pt"), ("jobs", "notes/readme.txt")]:
        plane.on_blob_created(BlobEvent("ev", container, name))
    assert store.calls == {}


def test_manifests_dropped_one_after_another_are_acted_on_in_the_order_they_were_raised() -> None:
    plane, _ = plane_with(FakeComputeBackend())
    first, second = MANIFEST.format(name="same"), MANIFEST.format(name="same").replace("digits/", "digits/b/")
    plane.data.write("datasets", "digits/b/x.npz", b"x")
    raised = plane.now()
    plane.data.write("jobs", "manifests/same.yaml", second.encode())
    plane.on_blob_created(BlobEvent("later", "jobs", "manifests/same.yaml", '"2"', raised + timedelta(seconds=1)))
    plane.data.write("jobs", "manifests/old.yaml", first.encode())
    plane.on_blob_created(BlobEvent("earlier", "jobs", "manifests/old.yaml", '"1"', raised))
    plane.process_inbox()
    job = plane.store.get_job("same")
    assert job is not None and job.spec.data.prefix == "digits/b/"  # the newer manifest is the job's


def test_one_pass_acts_on_every_page_and_leaves_only_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "INBOX_PAGE", 3)
    plane, _ = plane_with(FakeComputeBackend())
    plane.submit(WATCHING, trigger="http", cause="c", source="http")
    for i in range(7):
        plane.on_blob_created(BlobEvent(f"up-{i}", "datasets", f"digits/{i}.npz", f'"{i}"', plane.now()))
    plane.data.write("jobs", "manifests/gone.yaml", b"")
    plane.on_blob_created(BlobEvent("bad", "jobs", "manifests/gone.yaml", '"9"', plane.now()))
    reads = plane.data.read

    def storage_down(*args: object, **kwargs: object) -> bytes:
        raise ConnectionError("storage is down")

    plane.data.read = storage_down  # type: ignore[method-assign]
    assert plane.process_inbox() == 7
    assert len(plane.store.pending_arrivals("watcher")) == 7
    assert [i.event_id for i in plane.store.intakes(10)] == ["bad"]  # kept for the next pass
    plane.data.read = reads  # type: ignore[method-assign]
    assert plane.process_inbox() == 1 and plane.store.intakes(10) == []

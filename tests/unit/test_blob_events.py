"""Blob events as the queue trigger hands them over: each acted on at once, in any order, any number of times."""

from __future__ import annotations

from datetime import timedelta

import pytest

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.domain.runs import RunState
from aztrain.service.facade import BlobEvent
from tests.unit.test_reconcile_pass import MANIFEST, plane_with

WATCHING = MANIFEST.format(name="watcher") + "retrain: {on_data_arrival: true}\n"


def test_a_manifest_event_makes_its_run_and_takes_its_first_steps_at_once() -> None:
    plane, _ = plane_with(FakeComputeBackend(provision_polls=0))
    plane.data.write("jobs", "manifests/one.yaml", MANIFEST.format(name="one").encode())
    plane.on_blob_created(BlobEvent("ev-1", "jobs", "manifests/one.yaml", '"1"', plane.now()))
    (run,) = plane.store.find_runs(job="one")
    assert (run.state, run.cause, run.source) == (RunState.SUBMITTED, "ev-1", "jobs/manifests/one.yaml")


def test_every_delivery_of_an_event_names_the_same_run() -> None:
    plane, _ = plane_with(FakeComputeBackend())
    plane.data.write("jobs", "manifests/one.yaml", MANIFEST.format(name="one").encode())
    event = BlobEvent("ev-1", "jobs", "manifests/one.yaml", '"1"', plane.now())
    for _ in range(3):
        plane.on_blob_created(event)
    assert len(plane.store.find_runs(job="one")) == 1


def test_the_control_planes_own_writes_cost_nothing() -> None:
    plane, store = plane_with(FakeComputeBackend())
    for container, name in [("runs", "digits/r/outputs/model.pt"), ("jobs", "notes/readme.txt")]:
        plane.on_blob_created(BlobEvent("ev", container, name))
    assert store.calls == {}


def test_an_older_manifest_delivered_late_gets_its_run_and_the_job_keeps_the_newer() -> None:
    plane, _ = plane_with(FakeComputeBackend())
    first, second = MANIFEST.format(name="same"), MANIFEST.format(name="same").replace("digits/", "digits/b/")
    plane.data.write("datasets", "digits/b/x.npz", b"x")
    raised = plane.now()
    plane.data.write("jobs", "manifests/same.yaml", second.encode())
    plane.on_blob_created(BlobEvent("later", "jobs", "manifests/same.yaml", '"2"', raised + timedelta(seconds=1)))
    plane.data.write("jobs", "manifests/old.yaml", first.encode())
    for _ in range(2):  # the late one, delivered twice
        plane.on_blob_created(BlobEvent("earlier", "jobs", "manifests/old.yaml", '"1"', raised))
    job = plane.store.get_job("same")
    assert job is not None and job.spec.data.prefix == "digits/b/"  # the newer manifest is the job's
    assert sorted(r.cause for r in plane.store.find_runs(job="same")) == ["earlier", "later"]  # one run each


def test_an_upload_becomes_one_arrival_per_watching_job_however_often_delivered() -> None:
    plane, store = plane_with(FakeComputeBackend())
    plane.submit(WATCHING, trigger="http", cause="c", source="http")
    store.calls.clear()
    upload = BlobEvent("up-1", "datasets", "digits/1.npz", '"1"', plane.now() + timedelta(seconds=2))
    plane.on_blob_created(upload)
    assert dict(store.calls) == {"watching": 1, "record_arrivals": 1}
    plane.on_blob_created(upload)
    assert len(plane.store.pending_arrivals("watcher")) == 1


def test_storage_trouble_raises_so_the_message_is_delivered_again() -> None:
    plane, _ = plane_with(FakeComputeBackend())
    plane.data.write("jobs", "manifests/one.yaml", MANIFEST.format(name="one").encode())
    reads = plane.data.read

    def storage_down(*args: object, **kwargs: object) -> bytes:
        raise ConnectionError("storage is down")

    plane.data.read = storage_down  # type: ignore[method-assign]
    event = BlobEvent("ev-1", "jobs", "manifests/one.yaml", '"1"', plane.now())
    with pytest.raises(ConnectionError):
        plane.on_blob_created(event)
    plane.data.read = reads  # type: ignore[method-assign]
    plane.on_blob_created(event)  # the redelivery
    assert len(plane.store.find_runs(job="one")) == 1


def test_a_first_step_that_fails_is_left_to_the_reconciler_and_the_event_is_done() -> None:
    backend = FakeComputeBackend()
    plane, _ = plane_with(backend)
    plane.data.write("jobs", "manifests/one.yaml", MANIFEST.format(name="one").encode())

    def backend_down(*args: object, **kwargs: object) -> int:
        raise ConnectionError("the backend is down")

    backend.ensure_cluster = backend_down  # type: ignore[method-assign]
    plane.on_blob_created(BlobEvent("ev-1", "jobs", "manifests/one.yaml", '"1"', plane.now()))
    (run,) = plane.store.find_runs(job="one")
    assert run.state is RunState.ACCEPTED  # recorded; the reconciler's next pass takes its steps

"""Intake through the blob-events queue on the dev host and Azurite: duplicates and disorder, poison, crashes, size.

Every message goes through Azurite's real queue service and the dev host's queue trigger, with
host.json's batch, retry and poison settings; behaviour only, never timings.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from aztrain.domain.documents import MAX_CHARS
from aztrain.domain.runs import RunState
from functions.blob_queue import MAX_DEQUEUE_COUNT
from tests.integration.test_http_api import Api
from tests.reliability.conftest import assert_converged, blob_created, drop_manifest, enqueue, settle


def raised_at(event: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The event as raised `seconds` from now (run ids, and so which manifest is newer, follow event time)."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    return {**event, "eventTime": at.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")}


def test_duplicated_out_of_order_messages_make_exactly_one_run_per_manifest(stack: Api) -> None:
    rng, plane = random.Random(11), stack.service
    jobs = [f"q-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)]
    events = [raised_at(blob_created(drop_manifest(plane, job)), -i) for i, job in enumerate(jobs)]
    deliveries = [event for event in events for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    enqueue(stack, *deliveries)  # taken in batches, handled concurrently
    settle(plane)
    assert_converged(plane, jobs)


def test_an_older_manifest_delivered_after_a_newer_one_gets_its_run_and_leaves_the_job_newer(stack: Api) -> None:
    plane, job = stack.service, f"order-{uuid.uuid4().hex[:6]}"
    plane.data.write("datasets", f"{job}/a.csv", b"1\n")
    older, newer = f"manifests/{job}-v1.yaml", f"manifests/{job}-v2.yaml"
    text = f"apiVersion: aztrain/v1\nkind: TrainingJob\nname: {job}\ndata: {{container: datasets, prefix: {job}/}}\n"
    plane.data.write("jobs", older, text.encode())
    plane.data.write("jobs", newer, (text + "compute: {nodes: 2}\n").encode())
    first = raised_at(blob_created(drop_event(older, "v1")), -5)
    second = raised_at(blob_created(drop_event(newer, "v2")), 0)
    enqueue(stack, second, first, first)
    runs = plane.store.find_runs(job=job)
    assert sorted(r.cause for r in runs) == [first["id"], second["id"]]
    current = plane.store.get_job(job)
    assert current is not None and current.spec.compute.nodes == 2


def drop_event(name: str, tag: str) -> Any:
    from aztrain.service.facade import BlobEvent

    return BlobEvent(id=f"evt-{tag}-{uuid.uuid4().hex[:6]}", container="jobs", name=name, etag=f'"{tag}"')


def test_a_message_failing_every_attempt_is_a_dead_letter_with_its_reason_and_holds_none_behind_it(
    stack: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = stack.service
    cursed = drop_manifest(plane, f"cursed-{uuid.uuid4().hex[:6]}")
    fine = [drop_manifest(plane, f"fine-{uuid.uuid4().hex[:6]}-{i}") for i in range(4)]
    read = plane.ctx.data.read

    def unreadable(container: str, name: str, **kwargs: Any) -> bytes:
        if name == cursed.name:
            raise ConnectionError("this blob cannot be read")
        return read(container, name, **kwargs)

    monkeypatch.setattr(plane.ctx.data, "read", unreadable)
    enqueue(stack, blob_created(cursed), *(blob_created(e) for e in fine))  # settled: poisoned and recorded
    settle(plane)
    assert_converged(plane, [e.name.removeprefix("manifests/").removesuffix(".yaml") for e in fine])
    (letter,) = [d for d in plane.store.dead_letters() if d.event_id == cursed.id]
    assert letter.function == "on_blob_event"
    assert f"failed {MAX_DEQUEUE_COUNT} of {MAX_DEQUEUE_COUNT} attempts" in letter.reason
    assert "ConnectionError: this blob cannot be read" in letter.reason
    listed = stack.call("GET", "/api/deadletters?limit=500").json()["deadletters"]
    assert any(d["event_id"] == cursed.id and "ConnectionError" in d["reason"] for d in listed)


def long_include(name: str, count: int) -> dict[str, Any]:
    """A valid manifest whose retrain.include list is long (its normalised JSON passes one 32K string property)."""
    return {
        "apiVersion": "aztrain/v1",
        "kind": "TrainingJob",
        "name": name,
        "data": {"container": "datasets", "prefix": f"{name}/"},
        "retrain": {"on_data_arrival": True, "include": [f"part-{i:05d}/*.npz" for i in range(count)]},
    }


def test_a_manifest_under_the_document_limit_is_held_whatever_its_normalised_size(stack: Api) -> None:
    name = f"long-{uuid.uuid4().hex[:6]}"
    document = yaml.safe_dump(long_include(name, 2500)).encode()
    assert len(document) < 64 * 1024
    stack.service.data.write("datasets", f"{name}/a.csv", b"1\n")
    response = stack.call("POST", "/api/jobs", document, {"Content-Type": "application/yaml"})
    assert response.status in (200, 201, 202), response.body
    job = stack.service.store.get_job(name)
    assert job is not None and len(job.spec.retrain.include) == 2500  # stored whole, read back whole


def unstorable(name: str) -> bytes:
    """Under 64 KiB as written; its normalised form is past what the store holds (a YAML alias repeats a string)."""
    head = (
        f"apiVersion: aztrain/v1\nkind: TrainingJob\nname: {name}\n"
        f"data: {{container: datasets, prefix: {name}/}}\nx-long: &long {'a' * 20_000}\n"
    )
    return (head + "retrain:\n  include: [" + ", ".join(["*long"] * 20) + "]\n").encode()


def test_a_manifest_the_store_cannot_hold_is_refused_naming_the_limit_over_http_and_as_a_blob(stack: Api) -> None:
    name = f"huge-{uuid.uuid4().hex[:6]}"
    response = stack.call("POST", "/api/jobs", unstorable(name), {"Content-Type": "application/yaml"})
    assert response.status in (413, 422), response.body
    assert f"the limit is {MAX_CHARS:,}" in response.body.decode()

    blob = drop_event(f"manifests/{name}.yaml", "huge")
    stack.service.data.write("jobs", blob.name, unstorable(name))
    enqueue(stack, blob_created(blob))
    (run,) = [r for r in stack.service.store.find_runs() if r.cause == blob.id]
    assert run.state is RunState.REJECTED and f"the limit is {MAX_CHARS:,}" in run.error

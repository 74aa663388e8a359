"""The service under test, twice: on the in-memory fakes and on real Table and Blob Storage (Azurite)."""

from __future__ import annotations

import hashlib
import json

import pytest

from aztrain.adapters.memory import FakeComputeBackend, InMemoryControlStore, InMemoryDataStore
from aztrain.domain.code import CodeFile, code_file_blob, code_listing_blob, code_snapshot
from aztrain.domain.runs import Run
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.settings import Settings
from tests.clock import Clock

#: Every scenario's job reads `datasets/digits/`: a run on an empty prefix fails before provisioning.
SEED_BLOB = "digits/seed.npz"
#: The job most scenarios run: two nodes of two processes on the seeded data.
MANIFEST = b"""
apiVersion: aztrain/v1
kind: TrainingJob
name: digits
data: {container: datasets, prefix: digits/}
compute: {nodes: 2, processes_per_node: 2}
"""


@pytest.fixture(params=["memory", "azurite"])
def plane(request: pytest.FixtureRequest) -> ControlPlane:
    built = _plane(request)
    built.data.write("datasets", SEED_BLOB, b"seed")
    return built


def _plane(request: pytest.FixtureRequest) -> ControlPlane:
    if request.param == "memory":
        return ControlPlane(
            settings=Settings(),
            store=InMemoryControlStore(),
            data=InMemoryDataStore(),
            backend=FakeComputeBackend(),
            now=Clock(),
        )
    settings: Settings = request.getfixturevalue("azurite_settings")
    store = request.getfixturevalue("run_store_on_azurite")
    data = request.getfixturevalue("data_store_on_azurite")
    return ControlPlane(settings=settings, store=store, data=data, backend=FakeComputeBackend(), now=Clock())


def deliver(plane: ControlPlane, *events: BlobEvent) -> list[Run]:
    """Deliver blob events as the queue trigger hands them over, one after another.

    Returns the runs they made, oldest first (a redelivery, or a data upload, makes none).
    """
    before = {r.id for r in plane.store.find_runs()}
    for event in events:
        plane.on_blob_created(event)
    return sorted((r for r in plane.store.find_runs() if r.id not in before), key=lambda r: r.created_at)


def drive(plane: ControlPlane, times: int = 6) -> None:
    """Run the reconciler a few times: enough for the scripted backend to finish a run."""
    for _ in range(times):
        plane.reconcile()


def push_code(plane: ControlPlane, files: dict[str, bytes]) -> str:
    """Store a code snapshot as `aztrain code push` does (files, then the listing); returns its id."""
    snapshot = code_snapshot(
        [CodeFile(path, len(data), hashlib.sha256(data).hexdigest()) for path, data in files.items()]
    )
    for path, data in files.items():
        plane.data.write("runs", code_file_blob(snapshot.id, path), data)
    plane.data.write("runs", code_listing_blob(snapshot.id), json.dumps(snapshot.to_json()).encode())
    return snapshot.id

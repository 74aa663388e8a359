"""Storage faults: Azurite stopped mid-flight and started again.

While storage is down every handler fails loudly (so Event Grid retries it), whatever step it was
at; nothing half-written is left (a run exists with its whole history or not at all); and once
storage is back, redelivery and the reconciler converge. A dead letter cannot be recorded without
storage either, so that event too is retried rather than lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.adapters.storage.blobs import BlobDataStore
from aztrain.adapters.storage.tables import TableControlStore
from aztrain.domain.layout import backend_job_name
from aztrain.domain.records import JobPhase
from aztrain.service import faults
from aztrain.service.bootstrap import ensure_storage
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT, Settings
from devhost import Azurite, azurite_connection_string
from tests.clock import Clock
from tests.conftest import free_port_block
from tests.reliability.conftest import assert_converged, assert_history_forward_only, drop_manifest, settle

pytestmark = pytest.mark.azurite


@dataclass
class Outage:
    """A control plane on an Azurite of its own, which the test stops and starts."""

    azurite: Azurite
    plane: ControlPlane

    def stop_at(self, point: str) -> Callable[[str], None]:
        """A fault hook: storage goes away when the handler reaches `point` (once)."""

        def hook(reached: str) -> None:
            if reached == point and self.azurite.pid is not None:
                self.azurite.stop()

        return hook


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    base = free_port_block()
    connection_string = azurite_connection_string(
        AZURITE_CONNECTION_STRING, blob_port=base, queue_port=base + 1, table_port=base + 2
    )
    settings = Settings(storage_connection_string=connection_string, table_prefix="o" + uuid.uuid4().hex[:8])
    with Azurite(connection_string=connection_string, location=tmp_path / "azurite", project_root=PROJECT_ROOT) as az:
        ensure_storage(settings)
        # No SDK retries: what is under test is what the control plane does once a call has failed
        # (with the defaults, a blob call to a stopped account fails only after about 85 s of retrying).
        tables = TableServiceClient.from_connection_string(connection_string, retry_total=0)
        blobs = BlobServiceClient.from_connection_string(connection_string, retry_total=0)
        plane = ControlPlane(
            settings=settings,
            store=TableControlStore(tables, prefix=settings.table_prefix),
            data=BlobDataStore(blobs),
            backend=FakeComputeBackend(provision_polls=0),
            now=Clock(),
        )
        yield Outage(az, plane)


#: Where a handler is when storage goes: between its claim and its rows, after a backend submit, mid-scale-down.
POINTS = ["intake.after-job", "progress.after-submit", "capacity.before-scale-down"]


@pytest.mark.parametrize("point", POINTS)
def test_storage_lost_mid_handler_fails_loudly_leaves_nothing_half_written_and_converges(
    outage: Outage, point: str
) -> None:
    plane, jobs = outage.plane, ["outage-a", "outage-b"]
    events = [drop_manifest(plane, job) for job in jobs]
    failed: list[BlobEvent | str] = []
    with faults.injected(outage.stop_at(point)):
        for event in events:
            try:
                plane.on_blob_created(event)
            except AzureError:  # loud: the Functions host answers 500 and Event Grid retries
                failed.append(event)
        for _ in range(6):
            try:
                plane.reconcile()
            except AzureError:
                failed.append("reconcile")
    assert failed, f"storage went away at {point}, yet every handler succeeded"
    assert outage.azurite.pid is None

    outage.azurite.start()
    for run in plane.store.find_runs():  # what was written is whole: every run has its history from row 1
        assert_history_forward_only(plane, run)
    for event in events:  # Event Grid's retries
        plane.on_blob_created(event)
    settle(plane)
    assert_converged(plane, jobs)


def test_every_handler_fails_loudly_while_storage_is_down(outage: Outage) -> None:
    plane = outage.plane
    event = drop_manifest(plane, "outage-down")
    plane.on_blob_created(event)
    (run,) = plane.store.find_runs(job="outage-down")
    outage.azurite.stop()
    attempts: list[Callable[[], object]] = [
        lambda: plane.on_blob_created(event),
        lambda: plane.on_blob_created(BlobEvent(id="d-1", container="datasets", name="outage-down/new.csv")),
        lambda: plane.on_job_status(backend_job_name(run.id, 1), JobPhase.RUNNING, cause="event:1"),
        lambda: plane.submit(b"name: x", trigger="http", cause="r", source="http"),
        plane.reconcile,
        lambda: plane.dead_letter(function="f", event_id="e", event_type="T", subject="s", reason="r"),
    ]
    for attempt in attempts:
        with pytest.raises(AzureError):
            attempt()
    outage.azurite.start()
    settle(plane)
    assert_converged(plane, ["outage-down"])

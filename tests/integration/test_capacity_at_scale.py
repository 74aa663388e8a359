"""Cluster capacity at scale on Table Storage (Azurite): 3,000 active runs on one cluster.

The cluster's row holds a count, not the runs: they live in the `active` index, one row each,
so the row stays the same size however many runs are active (a list of run ids overflowed
Table Storage's 64 KiB property limit at about 2,500).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableServiceClient

from aztrain.adapters.memory import FakeComputeBackend, InMemoryDataStore
from aztrain.adapters.storage.tables import TableControlStore, active_entity
from aztrain.domain.manifest import parse_manifest
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import Settings
from aztrain.service.usecases import capacity
from tests.clock import Clock
from tests.contract.conftest import MANIFEST

CLUSTER = "fake-gpu-small"
ACTIVE = 3000


@pytest.fixture
def plane(azurite_settings: Settings, run_store_on_azurite: TableControlStore) -> ControlPlane:
    data = InMemoryDataStore()
    data.write("datasets", "digits/seed.npz", b"seed")
    return ControlPlane(
        settings=azurite_settings, store=run_store_on_azurite, data=data, backend=FakeComputeBackend(), now=Clock()
    )


def provisioning_runs(count: int) -> list[Run]:
    spec = parse_manifest(MANIFEST)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Run.create(
            id=f"{i:013d}-b0b0b0",  # distinct: ids made in one instant could collide
            job=f"bulk-{i % 30}",
            state=RunState.ACCEPTED,
            at=at,
            trigger="http",
            cause=f"c{i}",
            spec=spec,
        ).moved(RunState.PROVISIONING, cause="reconciler", at=at, cluster=CLUSTER)
        for i in range(count)
    ]


def index_in_bulk(settings: Settings, runs: list[Run]) -> None:
    """The index rows `save_run` writes for these runs, 100 per entity-group transaction (seconds, not minutes)."""
    table = TableServiceClient.from_connection_string(settings.storage_connection_string).get_table_client(
        settings.table_prefix + "active"
    )
    rows = [("upsert", active_entity(run)) for run in runs]
    for start in range(0, len(rows), 100):
        table.submit_transaction(rows[start : start + 100])


def cluster_row(settings: Settings) -> dict[str, object]:
    table = TableServiceClient.from_connection_string(settings.storage_connection_string).get_table_client(
        settings.table_prefix + "clusters"
    )
    return dict(table.get_entity("fake", CLUSTER))


def test_3000_active_runs_on_one_cluster_keep_its_row_small_and_its_nodes_up(plane, azurite_settings):
    mine = plane.advance(plane.submit(MANIFEST, trigger="http", cause="mine", source="http").run.id)
    assert mine.cluster == CLUSTER
    capacity.reconcile_clusters(plane.ctx)
    one_run_row = cluster_row(azurite_settings)
    assert one_run_row["ActiveRuns"] == 1

    index_in_bulk(azurite_settings, provisioning_runs(ACTIVE))
    capacity.reconcile_clusters(plane.ctx)
    row = cluster_row(azurite_settings)
    assert row["ActiveRuns"] == ACTIVE + 1 and row["DesiredNodes"] == 2
    assert row.keys() == one_run_row.keys()
    assert len(json.dumps(row, default=str)) < 1024  # the same few fields as with one run
    assert len(plane.store.find_runs(states=ACTIVE_STATES, cluster=CLUSTER)) == ACTIVE + 1

    scaled_down: list[str] = []
    plane.backend.scale_to_zero = scaled_down.append  # type: ignore[method-assign]
    for _ in range(6):  # my run ends among 3,000 still active (the scripted backend needs a few steps)
        plane.advance(mine.id)
    capacity.reconcile_clusters(plane.ctx)
    assert plane.get_run(mine.id).state is RunState.COMPLETED
    assert scaled_down == []  # never under an active run
    record = plane.store.get_cluster("fake", CLUSTER)
    assert record is not None and (record.active_runs, record.desired_nodes) == (ACTIVE, 2)


def test_a_run_still_listed_as_active_after_it_ended_is_forgotten_and_its_cluster_goes_to_zero(plane, azurite_settings):
    submitted = plane.advance(plane.submit(MANIFEST, trigger="http", cause="crash", source="http").run.id)
    for _ in range(6):
        plane.advance(submitted.id)
    assert plane.get_run(submitted.id).state is RunState.COMPLETED
    index_in_bulk(azurite_settings, [submitted])  # a crash between its last write and the index's
    assert plane.store.find_runs(states=ACTIVE_STATES, cluster=CLUSTER) != []

    plane.reconcile()
    assert plane.store.find_runs(states=ACTIVE_STATES) == []
    record = plane.store.get_cluster("fake", CLUSTER)
    assert record is not None and (record.desired_nodes, record.active_runs, record.observed_nodes) == (0, 0, 0)

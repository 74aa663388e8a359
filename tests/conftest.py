"""Shared fixtures: a real Azurite for the whole session, stores on it, and their in-memory twins."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from aztrain.adapters.memory import InMemoryControlStore, InMemoryDataStore
from aztrain.adapters.storage.blobs import BlobDataStore
from aztrain.adapters.storage.tables import TableControlStore
from aztrain.service.bootstrap import build_control_store, build_data_store
from aztrain.service.ports import ControlStore, DataStore
from aztrain.service.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT, Settings
from devhost import Azurite, azurite_connection_string

CONTAINERS = ("jobs", "runs", "datasets")


def free_port_block(size: int = 3) -> int:
    """The first of `size` consecutive free ports (Azurite wants blob, queue, table side by side)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + size < 65535 and all(_port_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports found")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Azurite on free ports; yields its connection string."""
    base = free_port_block()
    connection_string = azurite_connection_string(
        AZURITE_CONNECTION_STRING, blob_port=base, queue_port=base + 1, table_port=base + 2
    )
    location = tmp_path_factory.mktemp("azurite")
    with Azurite(connection_string=connection_string, location=location, project_root=PROJECT_ROOT):
        yield connection_string


@pytest.fixture
def azurite_settings(azurite: str) -> Settings:
    """Settings on Azurite with a table prefix of its own, so tests never see each other's rows."""
    return Settings(storage_connection_string=azurite, table_prefix="t" + uuid.uuid4().hex[:10])


@pytest.fixture
def run_store_on_azurite(azurite_settings: Settings) -> TableControlStore:
    store = build_control_store(azurite_settings)
    store.create_tables()
    return store


@pytest.fixture
def data_store_on_azurite(azurite_settings: Settings) -> BlobDataStore:
    _empty_containers(azurite_settings.storage_connection_string)
    store = build_data_store(azurite_settings)
    store.create_containers(CONTAINERS)
    return store


@pytest.fixture(params=["memory", "tables"])
def run_store(request: pytest.FixtureRequest) -> ControlStore:
    if request.param == "memory":
        return InMemoryControlStore()
    store: TableControlStore = request.getfixturevalue("run_store_on_azurite")
    return store


@pytest.fixture(params=["memory", "blobs"])
def data_store(request: pytest.FixtureRequest) -> DataStore:
    if request.param == "memory":
        return InMemoryDataStore()
    store: BlobDataStore = request.getfixturevalue("data_store_on_azurite")
    return store


def _empty_containers(connection_string: str) -> None:
    service = BlobServiceClient.from_connection_string(connection_string)
    for container in service.list_containers():
        client = service.get_container_client(container.name)
        for blob in client.list_blobs():
            client.delete_blob(blob.name)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent

"""Composition root: settings → adapters → service. The only module that chooses adapters.

The storage adapters and their SDKs are imported when the first store is built, never at import:
the Functions triggers import this module at cold start, and the blob SDK alone costs ~0.3 s there
(it pulls in aiohttp).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aztrain.adapters.events.eventgrid import EventGridSink
from aztrain.service.backends import build_backend
from aztrain.service.facade import RUN_STEPS_QUEUE, ControlPlane
from aztrain.service.settings import Settings

if TYPE_CHECKING:
    from aztrain.adapters.storage.blobs import BlobDataStore
    from aztrain.adapters.storage.queues import QueueStepRequests
    from aztrain.adapters.storage.tables import TableControlStore


def utc_now() -> datetime:
    return datetime.now(UTC)


def _credential() -> Any:
    # Managed identity in Azure, developer login elsewhere; imported only when no key is configured.
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def build_data_store(settings: Settings) -> BlobDataStore:
    # Lazy: azure-storage-blob (+ aiohttp) is ~0.3 s of cold start; the first event pays it instead.
    from azure.storage.blob import BlobServiceClient

    from aztrain.adapters.storage.blobs import BlobDataStore

    if settings.storage_connection_string:
        service = BlobServiceClient.from_connection_string(settings.storage_connection_string)
    else:
        service = BlobServiceClient(f"https://{settings.storage_account}.blob.core.windows.net", _credential())
    return BlobDataStore(service)


def build_control_store(settings: Settings) -> TableControlStore:
    # Lazy: azure-data-tables and azure-core are ~60 ms of cold start; the first event pays it instead.
    from azure.data.tables import TableServiceClient

    from aztrain.adapters.storage.tables import TableControlStore

    if settings.storage_connection_string:
        service = TableServiceClient.from_connection_string(settings.storage_connection_string)
    else:
        service = TableServiceClient(
            f"https://{settings.storage_account}.table.core.windows.net", credential=_credential()
        )
    return TableControlStore(service, prefix=settings.table_prefix)


def build_step_requests(settings: Settings) -> QueueStepRequests:
    """The `run-steps` queue new runs' first steps are asked for on."""
    # Lazy, as the stores: azure-storage-queue is imported when the service is first built, not at cold start.
    from azure.storage.queue import QueueClient

    from aztrain.adapters.storage.queues import QueueStepRequests

    if settings.storage_connection_string:
        queue = QueueClient.from_connection_string(settings.storage_connection_string, RUN_STEPS_QUEUE)
    else:
        url = f"https://{settings.storage_account}.queue.core.windows.net"
        queue = QueueClient(url, RUN_STEPS_QUEUE, credential=_credential())
    return QueueStepRequests(queue)


def build_event_sink(settings: Settings) -> EventGridSink | None:
    """The custom topic's sink: by key if one is set, else by identity; None when no topic is configured."""
    endpoint = settings.events_topic_endpoint
    if not endpoint:
        return None
    key = settings.events_topic_key
    return EventGridSink(endpoint, key=key, credential=None if key else _credential())


def build_control_plane(settings: Settings) -> ControlPlane:
    return ControlPlane(
        settings=settings,
        store=build_control_store(settings),
        data=build_data_store(settings),
        backend=build_backend(settings),
        now=utc_now,
        events=build_event_sink(settings),
        steps=build_step_requests(settings),
    )


def ensure_storage(settings: Settings) -> None:
    """Create the containers and tables the control plane uses (locally; `infra/` does it in Azure)."""
    build_data_store(settings).create_containers(
        (settings.jobs_container, settings.runs_container, *settings.data_containers)
    )
    build_control_store(settings).create_tables()


@functools.cache
def control_plane() -> ControlPlane:
    """The process-wide service used by the Functions triggers, built on first use."""
    return build_control_plane(Settings.from_env())

"""The function app for tests that index it: azure-functions indexes an app only once per process."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import azure.functions as func
import pytest

import function_app
from aztrain.service.bootstrap import control_plane, ensure_storage
from aztrain.service.facade import RUN_STEPS_QUEUE, ControlPlane
from aztrain.service.ports import ComputeBackend
from aztrain.service.settings import PROJECT_ROOT, Settings
from devhost import DevHost
from devhost.identity import LocalUsers
from devhost.queue_triggers import QueueSettings
from functions import blob_queue, dashboard, events, http_api, outputs, reconcile, run_steps


def fresh_function_app() -> func.FunctionApp:
    """`function_app.app` built anew, blueprints included, whatever other tests in the session have indexed."""
    blueprints = (http_api, outputs, events, blob_queue, run_steps, reconcile, dashboard)  # outputs: on http_api.bp
    for blueprint in blueprints:
        importlib.reload(blueprint)
    return importlib.reload(function_app).app


@contextlib.contextmanager
def hosted_app(
    azurite: str,
    *,
    table_prefix: str,
    state_dir: Path,
    backend: ComputeBackend | None = None,
    users: LocalUsers | None = None,
    queue_lease: float = 30.0,
) -> Iterator[tuple[DevHost, ControlPlane]]:
    """A freshly built `function_app` on the dev host over Azurite, timers off, and the service it uses.

    Settings come from the environment, as in Azure; `backend` replaces the configured one (e.g. a scripted fake);
    `users`: who the dev host signs callers in as (default: every caller is the local admin);
    `queue_lease`: how long a queue message stays invisible while its function runs (a host that dies
    holding one is relieved of it after that).
    """
    env = {
        "AZTRAIN_STORAGE_CONNECTION_STRING": azurite,
        "AZTRAIN_TABLE_PREFIX": table_prefix,
        "AZTRAIN_LOCAL_STATE_DIR": str(state_dir),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        control_plane.cache_clear()  # the process-wide service is built from these settings
        ensure_storage(Settings.from_env())
        service = control_plane()
        if backend is not None:
            patch.setattr(service, "ctx", replace(service.ctx, backend=backend))
        _empty_queues(azurite)
        try:
            with DevHost(
                fresh_function_app(),
                connection_string=azurite,
                port=0,
                timer_interval=None,
                sign_in=(users or LocalUsers()).signed_in,
                queue_settings=QueueSettings.from_host_json(PROJECT_ROOT / "host.json"),
                queue_lease=queue_lease,
            ) as host:
                yield host, service
        finally:
            control_plane.cache_clear()


def _empty_queues(azurite: str) -> None:
    """The app's queues as a new deployment has them: empty (the session's Azurite is shared by its tests)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueServiceClient

    service = QueueServiceClient.from_connection_string(azurite)
    queues = (blob_queue.BLOB_EVENTS_QUEUE, blob_queue.POISON_QUEUE, RUN_STEPS_QUEUE, run_steps.POISON_QUEUE)
    for name in queues:
        with contextlib.suppress(ResourceNotFoundError):
            service.get_queue_client(name).clear_messages()

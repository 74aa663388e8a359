"""The real local stack in its own process: `aztrain dev` with Azurite, talked to over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aztrain.adapters.storage.blobs import BlobDataStore
from aztrain.adapters.storage.tables import TableControlStore
from aztrain.cli.client import Client
from aztrain.service.bootstrap import build_control_store, build_data_store
from aztrain.service.settings import AZURITE_CONNECTION_STRING, Settings
from devhost import azurite_connection_string
from tests.conftest import free_port_block

STARTUP_TIMEOUT = 90.0


@dataclass
class Stack:
    """Handles on a running local stack: its API, and direct access to its storage for assertions."""

    url: str
    client: Client
    data: BlobDataStore
    tables: TableControlStore
    local_state: Path
    log: Path
    storage: str  # the connection string of its Azurite (through the blob front door)


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll until `condition()` is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@contextmanager
def running_stack(state_dir: Path) -> Iterator[Stack]:
    """`aztrain dev` on free ports with its state in `state_dir`, healthy; stopped on exit."""
    azurite_port, host_port = free_port_block(), free_port_block(1)
    log = state_dir / "devhost.log"
    env = {
        **os.environ,
        "AZTRAIN_LOCAL_PROVISION_SECONDS": "1",
        "AZTRAIN_LOCAL_MAX_SLOTS": "2",
        "AZTRAIN_LOCAL_CLUSTER_NODES": "2",
        # Two serverless-t4 nodes' worth of T4 vCPUs; the other tests' profiles (e2e, queue) have no family.
        "AZTRAIN_LOCAL_QUOTA": '{"standardNCASv3_T4Family": 8}',
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "aztrain.cli.main",
        "dev",
        "--port",
        str(host_port),
        "--azurite-port",
        str(azurite_port),
        "--state-dir",
        str(state_dir),
        "--timer-interval",
        "0.5",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{host_port}"
    client = Client(url, timeout=30)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"aztrain dev exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return client.health().status == "ok"
        except Exception:
            return False

    try:
        wait_for(healthy, timeout=STARTUP_TIMEOUT, what="the dev host to report healthy")
        storage = azurite_connection_string(
            AZURITE_CONNECTION_STRING, blob_port=azurite_port, queue_port=azurite_port + 1, table_port=azurite_port + 2
        )
        settings = Settings(storage_connection_string=storage)
        yield Stack(
            url=url,
            client=client,
            data=build_data_store(settings),
            tables=build_control_store(settings),
            local_state=state_dir / "local",
            log=log,
            storage=storage,
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

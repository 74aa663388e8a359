"""Control-plane throughput: how fast events become runs, on fakes and on Azurite. Prints JSON.

    .venv/bin/python bench/control_plane.py [--events 200] [--azurite-port 10020]

Measures the service layer (claims, ETag writes, history) without training:
the compute backend is the scripted fake. Numbers are per process on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aztrain.adapters.memory import FakeComputeBackend, InMemoryDataStore, InMemoryRunStore
from aztrain.bootstrap import build_data_store, build_run_store, ensure_storage
from aztrain.ports import DataStore, RunStore
from aztrain.service import BlobEvent, ControlPlane
from aztrain.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT, Settings
from devhost import Azurite, azurite_connection_string

MANIFEST = """apiVersion: aztrain/v1
kind: TrainingJob
name: bench-{i}
data: {{container: datasets, prefix: bench/}}
"""


def measure(settings: Settings, store: RunStore, data: DataStore, events: int) -> dict[str, float]:
    plane = ControlPlane(
        settings=settings, store=store, data=data, backend=FakeComputeBackend(), now=lambda: datetime.now(UTC)
    )
    for i in range(events):
        data.write("jobs", f"manifests/bench-{i}.yaml", MANIFEST.format(i=i).encode())

    def each(action: Callable[[int], object]) -> float:
        started = time.perf_counter()
        for i in range(events):
            action(i)
        return events / (time.perf_counter() - started)

    def deliver(i: int) -> object:
        return plane.on_blob_created(BlobEvent(id=f"ev-{i}", container="jobs", name=f"manifests/bench-{i}.yaml"))

    first = each(deliver)
    redelivered = each(deliver)  # duplicates: claims answer, nothing is created
    started = time.perf_counter()
    plane.reconcile()
    return {
        "manifest_events_per_s": round(first, 1),
        "duplicate_events_per_s": round(redelivered, 1),
        "reconcile_s_for_all_runs": round(time.perf_counter() - started, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--azurite-port", type=int, default=10020)
    args = parser.parse_args()
    result: dict[str, object] = {
        "events": args.events,
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    result["memory"] = measure(Settings(), InMemoryRunStore(), InMemoryDataStore(), args.events)
    location = Path(tempfile.mkdtemp(prefix="aztrain-bench-"))
    port = args.azurite_port
    try:
        connection_string = azurite_connection_string(
            AZURITE_CONNECTION_STRING, blob_port=port, queue_port=port + 1, table_port=port + 2
        )
        with Azurite(connection_string=connection_string, location=location, project_root=PROJECT_ROOT):
            settings = Settings(storage_connection_string=connection_string)
            ensure_storage(settings)
            result["azurite"] = measure(settings, build_run_store(settings), build_data_store(settings), args.events)
    finally:
        shutil.rmtree(location, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

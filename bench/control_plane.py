"""The control plane's own costs on a private Azurite. Prints JSON.

    .venv/bin/python bench/control_plane.py [--active 10,100,1000]

In one run: the ceiling (Azurite's own Table insert rate, same SDK), cold start, and a reconcile
pass at several counts of active runs, each with the storage round trips it cost (HTTP requests
the SDK sent, counted on the wire). The reconcile pass uses the scripted fake backend, whose
clusters never finish provisioning: what it measures is the control plane's own cost. Intake,
from real uploads through the blob-events queue, is `bench/intake.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.domain.runs import ACTIVE_STATES, RunState
from aztrain.service.bootstrap import build_control_store, build_data_store, ensure_storage
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT, Settings
from bench.storage_calls import StorageCalls
from devhost import Azurite, azurite_connection_string

MANIFEST = """apiVersion: aztrain/v1
kind: TrainingJob
name: {name}
data: {{container: datasets, prefix: bench/}}
"""
#: Peak RSS from VmHWM, this process's own: Linux carries ru_maxrss over fork and exec, so it would show the bench's.
COLD_START = """
import json, sys, time
started = time.perf_counter()
{code}
peak_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({{"s": round(time.perf_counter() - started, 3), "rss_mb": round(peak_kb / 1024, 1)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--active", default="10,100,1000", help="active-run counts for the reconcile pass")
    parser.add_argument("--azurite-port", type=int, default=10020)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cold_start": {"function_app": cold_start(INDEX_APP), "azure.ai.ml": cold_start("import azure.ai.ml")},
    }
    calls = StorageCalls().install()
    port = args.azurite_port
    location = Path(tempfile.mkdtemp(prefix="aztrain-bench-"))
    connection_string = azurite_connection_string(
        AZURITE_CONNECTION_STRING, blob_port=port, queue_port=port + 1, table_port=port + 2
    )
    try:
        with Azurite(connection_string=connection_string, location=location, project_root=PROJECT_ROOT):
            bench = Bench(connection_string, table_port=port + 2, calls=calls)
            note(result, "ceiling", bench.ceiling())
            note(result, "reconcile", [bench.reconcile(int(n)) for n in args.active.split(",")])
    finally:
        shutil.rmtree(location, ignore_errors=True)
    print(json.dumps(result, indent=2))


def note(result: dict[str, Any], key: str, figures: object) -> None:
    """Keep a section's figures, and show them on stderr at once (the whole run takes minutes)."""
    result[key] = figures
    print(json.dumps({key: figures}), file=sys.stderr, flush=True)


INDEX_APP = (
    "import function_app; from devhost.functions_index import FunctionIndex; FunctionIndex.from_app(function_app.app)"
)


def cold_start(code: str) -> dict[str, float]:
    """Import time and peak RSS of `code` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", COLD_START.format(code=code)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures: dict[str, float] = json.loads(out.splitlines()[-1])
    return figures


class Bench:
    """The measurements, sharing one Azurite and one count of storage requests."""

    def __init__(self, connection_string: str, *, table_port: int, calls: StorageCalls) -> None:
        self.connection_string = connection_string
        self.table_port = table_port
        self.calls = calls
        self.insert_rate = 0.0

    # ------------------------------------------------------------------------------ the ceiling
    def ceiling(self) -> dict[str, float]:
        """Azurite's own rate of single-entity Table inserts, one at a time and from 8 threads."""
        table = TableServiceClient.from_connection_string(self.connection_string).create_table("ceiling")
        partition = iter(range(10**9))

        def insert(_: int) -> None:
            table.create_entity({"PartitionKey": "p", "RowKey": str(next(partition)), "Value": "x" * 100})

        one = rate(insert, 500, senders=1)
        eight = rate(insert, 1000, senders=8)
        self.insert_rate = max(one, eight)
        return {"inserts_per_s_1_thread": round(one, 1), "inserts_per_s_8_threads": round(eight, 1)}

    def timed_pass(self, reconcile: Callable[[], object]) -> tuple[float, int]:
        """One reconciler pass: its seconds and Table requests."""
        before, started = self.calls.total(self.table_port), time.perf_counter()
        reconcile()
        return round(time.perf_counter() - started, 3), self.calls.total(self.table_port) - before

    # ---------------------------------------------------------------------------------- reconcile
    def reconcile(self, active: int) -> dict[str, Any]:
        """Reconciler passes over `active` runs that handlers recorded (ACCEPTED), on tables of their own.

        The first pass takes every run's first step (snapshot, cluster, PROVISIONING); the steady
        pass that follows finds them all still waiting for nodes, which is the cost of every pass after.
        """
        settings = Settings(storage_connection_string=self.connection_string, table_prefix=f"rec{active}")
        ensure_storage(settings)
        plane = ControlPlane(
            settings=settings,
            store=build_control_store(settings),
            data=build_data_store(settings),
            backend=FakeComputeBackend(provision_polls=10**9),  # clusters never ready: runs stay PROVISIONING
            now=lambda: datetime.now(UTC),
        )
        plane.data.write("datasets", "bench/seed.npz", b"seed")

        def submit(i: int) -> None:
            plane.submit(MANIFEST.format(name=f"rec-{i}").encode(), trigger="http", cause=f"b{i}", source="bench")

        rate(submit, active, senders=8)
        assert len(plane.store.find_runs(states=ACTIVE_STATES)) == active
        first_s, first_calls = self.timed_pass(plane.reconcile)
        assert len(plane.store.find_runs(states=(RunState.PROVISIONING,))) == active
        pass_s, calls = self.timed_pass(plane.reconcile)
        return {
            "active_runs": active,
            "first_pass_s": first_s,
            "first_pass_table_calls": first_calls,
            "pass_s": pass_s,
            "table_calls_per_pass": calls,
        }


def rate(action: Callable[[int], object], count: int, *, senders: int) -> float:
    """Calls of `action(0..count-1)` per second, from `senders` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(action, range(count)))
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    main()

"""Control-plane speed on a private Azurite, through the dev host's real webhook and HTTP API. Prints JSON.

    .venv/bin/python bench/control_plane.py [--storm 1000] [--arrivals 10000] [--active 10,100,1000]

In one run: the ceiling (Azurite's own Table insert rate, same SDK), cold start, event →
SUBMITTED, single-event latency, an oversize manifest's rejection, floods of data arrivals into
one watched prefix and manifest storms with repeated deliveries (each at 8 and 32 senders, with
the reconciler pass that acts on what they recorded), and a reconcile pass at several counts
of active runs. Every figure carries the storage round trips it cost (HTTP
requests the SDK sent, counted on the wire) and, where it is a rate, its ratio to the ceiling.

The dev host runs in this process (as `aztrain dev` does, without the blob watcher: the
benchmark is the event source, and without the timer: the benchmark runs the reconciler's pass
where a figure includes it) with the local backend's provisioning delay set long, so no
training competes for the CPU. The reconcile pass uses the scripted fake backend, whose
clusters never finish provisioning: what it measures is the control plane's own cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

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
WATCHING = """apiVersion: aztrain/v1
kind: TrainingJob
name: {name}
data: {{container: datasets, prefix: {name}/}}
retrain: {{on_data_arrival: true, debounce: 0s, cooldown: 0s}}
"""
#: Peak RSS from VmHWM, this process's own: Linux carries ru_maxrss over fork and exec, so it would show the bench's.
#: The local backend's provisioning delay while the bench runs: no training competes for the CPU.
PROVISION_SECONDS = "86400"
COLD_START = """
import json, sys, time
started = time.perf_counter()
{code}
peak_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({{"s": round(time.perf_counter() - started, 3), "rss_mb": round(peak_kb / 1024, 1)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storm", type=int, default=1000, help="distinct manifests per storm")
    parser.add_argument("--arrivals", type=int, default=10_000, help="data-arrival events into one watched prefix")
    parser.add_argument("--active", default="10,100,1000", help="active-run counts for the reconcile pass")
    parser.add_argument("--single", type=int, default=30, help="single events for the latency figures")
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
            bench = Bench(connection_string, table_port=port + 2, calls=calls, state=location / "state")
            note(result, "ceiling", bench.ceiling())
            with bench.host() as url:
                note(result, "event_to_submitted", bench.event_to_submitted(url, 5))
                note(result, "oversize_manifest", bench.oversize(url))
                note(result, "single_event", bench.single_events(url, args.single))
                note(result, "arrivals", [bench.arrivals(url, args.arrivals, senders) for senders in (8, 32)])
                note(result, "storms", [bench.storm(url, args.storm, senders) for senders in (8, 32)])
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

    def __init__(self, connection_string: str, *, table_port: int, calls: StorageCalls, state: Path) -> None:
        self.connection_string = connection_string
        self.table_port = table_port
        self.calls = calls
        self.state = state
        self.blobs = BlobServiceClient.from_connection_string(connection_string)
        self.insert_rate = 0.0
        self.settings = Settings(storage_connection_string=connection_string, table_prefix="bench")

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

    # ---------------------------------------------------------------------------------- the host
    @contextmanager
    def host(self) -> Iterator[str]:
        """The dev host serving `function_app` on this Azurite; yields its URL."""
        os.environ.update(
            AZTRAIN_STORAGE_CONNECTION_STRING=self.connection_string,
            AZTRAIN_TABLE_PREFIX=self.settings.table_prefix,
            AZTRAIN_LOCAL_PROVISION_SECONDS=PROVISION_SECONDS,
            AZTRAIN_LOCAL_STATE_DIR=str(self.state),
        )
        ensure_storage(self.settings)
        self.blobs.get_container_client("datasets").upload_blob("bench/seed.npz", b"seed", overwrite=True)
        import function_app
        from devhost.host import DevHost

        with DevHost(function_app.app, connection_string=self.connection_string, port=0, timer_interval=None) as dev:
            self.dev = dev
            yield dev.url

    def upload_manifests(self, names: list[str], template: str = MANIFEST) -> None:
        jobs = self.blobs.get_container_client("jobs")
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: jobs.upload_blob(f"manifests/{n}.yaml", template.format(name=n), overwrite=True), names
                )
            )

    # ------------------------------------------------------------------------------- single event
    def single_events(self, url: str, count: int) -> dict[str, Any]:
        """One manifest event at a time on an idle host: webhook POST until it is recorded (all a handler does)."""
        names = [f"single-{i}" for i in range(count)]
        self.upload_manifests(names)
        latencies = []
        before = self.calls.total(self.table_port)
        for name in names:
            started = time.perf_counter()
            post_event(url, blob_event("jobs", f"manifests/{name}.yaml"))
            latencies.append(time.perf_counter() - started)
        return {
            "events": count,
            "event_recorded_ms": percentiles(latencies),
            "table_calls_per_event": round((self.calls.total(self.table_port) - before) / count, 1),
            "next_pass_s": self.timed_pass()[0],  # which makes their runs and takes them forward
        }

    def event_to_submitted(self, url: str, count: int) -> dict[str, Any]:
        """Zero provisioning delay: each manifest event, then reconciler passes until its run is SUBMITTED.

        The handler records the event; the reconciler's next pass makes its run and takes it to SUBMITTED. The passes
        run back to back here, so the figure is the work itself; `aztrain dev` adds up to its timer
        interval (2 s) before the pass, Azure up to the reconciler's schedule (10 s).
        """
        from aztrain.service.bootstrap import control_plane

        names = [f"submitted-{i}" for i in range(count)]
        self.upload_manifests(names)
        os.environ["AZTRAIN_LOCAL_PROVISION_SECONDS"] = "0"
        control_plane.cache_clear()  # the triggers build the plane again, from this environment
        latencies, passes = [], []
        try:
            for name in names:
                started = time.perf_counter()
                post_event(url, blob_event("jobs", f"manifests/{name}.yaml"))
                made, run = 0, None
                while run is None or run.state in (RunState.ACCEPTED, RunState.PROVISIONING):
                    self.dev.run_timers_once()
                    made += 1
                    (run,) = control_plane().store.find_runs(job=name)
                latencies.append(time.perf_counter() - started)
                passes.append(made)
                assert run.state is RunState.SUBMITTED, run
                control_plane().cancel(run.id, cause="bench")  # no training competes with what follows
        finally:
            os.environ["AZTRAIN_LOCAL_PROVISION_SECONDS"] = PROVISION_SECONDS
            control_plane.cache_clear()
        return {
            "events": count,
            "event_to_submitted_ms": percentiles(latencies),
            "reconciler_passes": max(passes),
        }

    def oversize(self, url: str) -> dict[str, float]:
        """A 1 MB manifest, dropped in the jobs container and POSTed to the API: how long each takes to be refused.

        The dropped one: its event recorded, then the reconciler's inbox step (alone, without the
        rest of the pass) reads at most 64 KiB of it and records the REJECTED run.
        """
        from aztrain.service.bootstrap import control_plane

        huge = b"#" * 2**20
        self.blobs.get_container_client("jobs").upload_blob("manifests/huge.yaml", huge, overwrite=True)
        started = time.perf_counter()
        post_event(url, blob_event("jobs", "manifests/huge.yaml"))
        event_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        control_plane().process_inbox()
        inbox_ms = (time.perf_counter() - started) * 1000
        request = urllib.request.Request(f"{url}/api/jobs", data=huge, method="POST")
        started = time.perf_counter()
        with contextlib.suppress(urllib.error.HTTPError):  # refused, as it should be
            urllib.request.urlopen(request, timeout=60).close()
        return {
            "event_recorded_ms": round(event_ms, 1),
            "event_rejected_by_the_inbox_step_ms": round(inbox_ms, 1),
            "http_rejected_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    # -------------------------------------------------------------------------------------- storm
    def storm(self, url: str, manifests: int, senders: int) -> dict[str, Any]:
        """`manifests` distinct manifest events and 30 % repeated deliveries (same event id), `senders` at once."""
        prefix = f"storm{senders}-"
        names = [f"{prefix}{i}" for i in range(manifests)]
        self.upload_manifests(names)
        events = [blob_event("jobs", f"manifests/{n}.yaml") for n in names]
        deliveries = events + random.sample(events, k=int(manifests * 0.3))
        random.shuffle(deliveries)
        before = self.calls.total(self.table_port)
        per_s = rate(lambda i: post_event(url, deliveries[i]), len(deliveries), senders=senders)
        recorded = self.calls.total(self.table_port) - before
        pass_s, pass_calls = self.timed_pass()  # the reconciler's next pass makes the runs and starts them
        runs = [r for r in build_control_store(self.settings).find_runs() if r.job.startswith(prefix)]
        return {
            "senders": senders,
            "deliveries": len(deliveries),
            "events_per_s": round(per_s, 1),
            "ratio_to_ceiling": round(per_s / self.insert_rate, 2),
            "table_calls_per_delivery": round(recorded / len(deliveries), 1),
            "next_pass_s": pass_s,
            "next_pass_table_calls": pass_calls,
            "runs": len(runs),
            "distinct_jobs": len({r.job for r in runs}),
        }

    def timed_pass(self, reconcile: Callable[[], object] | None = None) -> tuple[float, int]:
        """One reconciler pass (the dev host's, unless `reconcile` is given): its seconds and Table requests."""
        before, started = self.calls.total(self.table_port), time.perf_counter()
        (reconcile or self.dev.run_timers_once)()
        return round(time.perf_counter() - started, 3), self.calls.total(self.table_port) - before

    # ----------------------------------------------------------------------------------- arrivals
    def arrivals(self, url: str, count: int, senders: int) -> dict[str, Any]:
        """`count` data uploads into one watched prefix from `senders` at once; then one reconciler pass."""
        job = f"flood{senders}"
        request = urllib.request.Request(
            f"{url}/api/jobs",
            data=WATCHING.format(name=job).encode(),
            method="POST",
            headers={"Content-Type": "application/yaml"},
        )
        urllib.request.urlopen(request, timeout=60).close()
        self.blobs.get_container_client("datasets").upload_blob(f"{job}/seed.npz", b"seed", overwrite=True)
        events = [blob_event("datasets", f"{job}/{i:05d}.npz") for i in range(count)]
        before = self.calls.total(self.table_port)
        per_s = rate(lambda i: post_event(url, events[i]), count, senders=senders)
        calls = self.calls.total(self.table_port) - before
        pass_s, pass_calls = self.timed_pass()  # the uploads become arrivals; the window (debounce 0) fires
        store = build_control_store(self.settings)
        runs = [r for r in store.find_runs(job=job) if r.trigger == "data"]
        return {
            "senders": senders,
            "events": count,
            "events_per_s": round(per_s, 1),
            "ratio_to_ceiling": round(per_s / self.insert_rate, 2),
            "table_calls_per_event": round(calls / count, 1),
            "next_pass_s": pass_s,
            "next_pass_table_calls": pass_calls,
            "data_runs": len(runs),
            "pending_after_the_window": len(store.pending_arrivals(job)),
        }

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


def blob_event(container: str, name: str) -> dict[str, Any]:
    """A `Microsoft.Storage.BlobCreated` event as Event Grid delivers it (a fresh id for every upload)."""
    event_id = str(uuid.uuid4())
    return {
        "id": event_id,
        "topic": "/subscriptions/0/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {"api": "PutBlob", "eTag": f'"{event_id}"', "blobType": "BlockBlob", "contentLength": 4},
        "dataVersion": "",
        "metadataVersion": "1",
    }


def post_event(url: str, event: dict[str, Any]) -> None:
    """POST one event to the webhook as Event Grid does; raises unless it is acknowledged."""
    request = urllib.request.Request(
        f"{url}/runtime/webhooks/EventGrid?functionName=on_blob_created",
        data=json.dumps([event]).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50": round(statistics.median(ordered) * 1000, 1),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


if __name__ == "__main__":
    main()

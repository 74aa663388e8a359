"""Intake from the user's side, through real uploads: `aztrain dev`'s stack on a private Azurite. Prints JSON.

    .venv/bin/python bench/intake.py [--single 20] [--storm 1000] [--poison 1000] [--idle 180]

Every manifest is uploaded for real, through the dev host's blob front door, which writes its
BlobCreated to the blob-events queue as Event Grid does; the queue trigger takes it from Azurite's
queue service with host.json's batch settings. A run is *listed* once the API (or, for storms,
the runs table it lists) shows it. The manifests' data prefixes are empty, so each run fails at its
first step without a node or a trainer competing for the CPU.

- single drops: upload → run listed by `GET /api/runs?job=`, one at a time on an idle host (p50/p99);
- storms: `--storm` manifests by 8 and by 32 uploaders → every run listed: makespan, runs/s, exactly one
  run each, and the ceiling measured just before on the same Azurite from as many threads (its own
  Table insert rate, and that rate over the Table requests one manifest costs, counted on the wire);
- poison: `--poison` manifests the store cannot hold (each REJECTED at once, with the reason), or
  messages whose every attempt fails (a blob that cannot be read: dead letters after 5 attempts),
  then one ordinary manifest: how long the ordinary one waits;
- idle: every function execution counted over `--idle` seconds with the timer on its Azure cadence
  (once a minute), per hour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient

from aztrain.cli.client import Client
from aztrain.domain.runs import RunState
from aztrain.service.bootstrap import build_control_store, control_plane
from aztrain.service.settings import Settings
from bench.storage_calls import StorageCalls
from devhost.localstack import LocalStack
from tests.conftest import free_port_block

MANIFEST = (
    "apiVersion: aztrain/v1\nkind: TrainingJob\nname: {name}\ndata: {{container: datasets, prefix: none-{name}/}}\n"
)
#: Under 64 KiB as written; a YAML alias repeats a 20,000-character string past what the store holds.
UNSTORABLE = f"x-long: &long {'a' * 20_000}\nretrain:\n  include: [{', '.join(['*long'] * 20)}]\n"
#: The timer's cadence in Azure (`functions/reconcile.py`: `0 * * * * *`).
AZURE_TIMER_SECONDS = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=20, help="single drops for the latency figures")
    parser.add_argument("--storm", type=int, default=1000, help="manifests per storm")
    parser.add_argument("--poison", type=int, default=1000, help="poison manifests before an ordinary one")
    parser.add_argument(
        "--failing", type=int, default=100, help="messages failing every attempt before an ordinary one"
    )
    parser.add_argument("--idle", type=float, default=180.0, help="seconds of idle host to count executions over")
    args = parser.parse_args()
    calls = StorageCalls().install()
    state = Path(tempfile.mkdtemp(prefix="aztrain-bench-intake-"))
    port = free_port_block()
    os.environ.update(AZTRAIN_TABLE_PREFIX="intake", AZTRAIN_LOCAL_STATE_DIR=str(state / "local"))
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    stack = LocalStack(state_dir=state, port=free_port_block(1), azurite_port=port, timer_interval=AZURE_TIMER_SECONDS)
    with stack:
        bench = Bench(stack, calls, table_port=port + 2)
        note(result, "single_drop", bench.single_drops(args.single))
        note(result, "storms", [bench.storm(args.storm, uploaders) for uploaders in (8, 32)])
        note(result, "unstorable_then_ordinary", bench.behind(args.poison, bench.unstorable))
        note(result, "failing_then_ordinary", bench.behind(args.failing, bench.failing))
        note(result, "idle", bench.idle(args.idle))
    print(json.dumps(result, indent=2))


def note(result: dict[str, Any], key: str, figures: object) -> None:
    """Keep a section's figures, and show them on stderr at once (the whole run takes minutes)."""
    result[key] = figures
    print(json.dumps({key: figures}), file=sys.stderr, flush=True)


class Bench:
    """The measurements, on one running stack."""

    def __init__(self, stack: LocalStack, calls: StorageCalls, *, table_port: int) -> None:
        self.stack = stack
        self.calls = calls
        self.table_port = table_port
        self.client = Client(stack.url, timeout=60)
        self.store = build_control_store(Settings.from_env())
        self.executions: Counter[str] = Counter()
        invoker = stack._host._invoker  # type: ignore[union-attr]  # counted for the idle figure
        call = invoker.call

        def counted(function: Any, value: Any) -> Any:
            self.executions[function.name] += 1
            return call(function, value)

        invoker.call = counted  # type: ignore[method-assign]

    def drop(self, name: str, text: str | None = None) -> None:
        self.stack.data.write("jobs", f"manifests/{name}.yaml", (text or MANIFEST.format(name=name)).encode())

    def listed(self, name: str) -> bool:
        return bool(self.client.runs(job=name, limit=1))

    def single_drops(self, count: int) -> dict[str, Any]:
        """Upload → listed by `GET /api/runs?job=`, one drop at a time."""
        latencies = []
        for i in range(count):
            name = f"single-{i}"
            started = time.perf_counter()
            self.drop(name)
            wait_until(lambda name=name: self.listed(name))
            latencies.append(time.perf_counter() - started)
        return {"drops": count, **percentiles(latencies)}

    def ceiling(self, threads: int) -> float:
        """Azurite's own single-entity Table inserts per second from `threads` threads, right now."""
        table = TableServiceClient.from_connection_string(self.stack_connection).create_table(f"ceiling{threads}")
        rows = iter(range(10**9))

        def insert(_: int) -> None:
            table.create_entity({"PartitionKey": "p", "RowKey": str(next(rows)), "Value": "x" * 100})

        return rate(insert, 1000, threads=threads)

    @property
    def stack_connection(self) -> str:
        return os.environ["AZTRAIN_STORAGE_CONNECTION_STRING"]

    def storm(self, manifests: int, uploaders: int) -> dict[str, Any]:
        """`manifests` uploads from `uploaders` at once → every run listed; exactly one run each."""
        inserts_per_s = self.ceiling(uploaders)
        prefix = f"storm{uploaders}-"
        names = [f"{prefix}{i:05d}" for i in range(manifests)]
        before, started = self.calls.total(self.table_port), time.perf_counter()
        rate(lambda i: self.drop(names[i]), manifests, threads=uploaders)
        uploaded_s = time.perf_counter() - started
        wait_until(lambda: len(self.runs_of(prefix)) >= manifests, timeout=1800, every=0.5)
        makespan = time.perf_counter() - started
        self.stack._host.drain(timeout=600)  # type: ignore[union-attr]  # the storm's messages all settled
        per_manifest = (self.calls.total(self.table_port) - before) / manifests
        runs = Counter(r.job for r in self.runs_of(prefix))
        runs_per_s = manifests / makespan
        ceiling = inserts_per_s / per_manifest
        return {
            "uploaders": uploaders,
            "manifests": manifests,
            "uploaded_s": round(uploaded_s, 2),
            "makespan_s": round(makespan, 2),
            "runs_per_s": round(runs_per_s, 1),
            "exactly_one_run_each": len(runs) == manifests and set(runs.values()) == {1},
            "table_inserts_per_s": round(inserts_per_s, 1),
            "ratio_to_inserts": round(runs_per_s / inserts_per_s, 3),
            "table_requests_per_manifest": round(per_manifest, 1),
            "ceiling_runs_per_s": round(ceiling, 1),
            "ratio_to_ceiling": round(runs_per_s / ceiling, 2),
        }

    def runs_of(self, prefix: str) -> list[Any]:
        return [r for r in self.store.find_runs() if r.job.startswith(prefix)]

    def behind(self, count: int, poison: Callable[[int], Iterable[str]]) -> dict[str, Any]:
        """`count` poison uploads (`poison(count)` makes them, returning their names), then one ordinary one."""
        names = list(poison(count))
        started = time.perf_counter()
        self.drop(f"ordinary-{len(names)}-{poison.__name__}")
        wait_until(lambda: self.listed(f"ordinary-{len(names)}-{poison.__name__}"), timeout=600)
        delay = time.perf_counter() - started
        self.stack._host.drain(timeout=600)  # type: ignore[union-attr]
        return {"poison": count, "ordinary_delay_s": round(delay, 2), **self.outcome(poison.__name__, names)}

    def unstorable(self, count: int) -> list[str]:
        names = [f"unstorable-{i:05d}" for i in range(count)]
        rate(lambda i: self.drop(names[i], MANIFEST.format(name=names[i]) + UNSTORABLE), count, threads=8)
        return names

    def failing(self, count: int) -> list[str]:
        """Manifests whose blob can never be read: every attempt fails, until the poison queue takes them."""
        names = [f"failing-{i:05d}" for i in range(count)]
        data, doomed = control_plane().ctx.data, {f"manifests/{n}.yaml" for n in names}
        read = data.read

        def unreadable(container: str, name: str, **kwargs: Any) -> bytes:
            if name in doomed:
                raise ConnectionError(f"{name} cannot be read")
            return read(container, name, **kwargs)

        data.read = unreadable  # type: ignore[method-assign]
        rate(lambda i: self.drop(names[i]), count, threads=8)
        return names

    def outcome(self, kind: str, names: list[str]) -> dict[str, Any]:
        """What became of the poison ones: REJECTED runs with their reason, or dead letters with theirs."""
        if kind == "unstorable":
            runs = [r for r in self.store.find_runs(states=(RunState.REJECTED,)) if r.job in set(names)]
            return {"rejected_with_reason": len(runs), "a_reason": runs[0].error if runs else ""}
        letters = [d for d in self.store.dead_letters() if d.subject.rsplit("/", 1)[-1][:-5] in set(names)]
        return {"dead_letters_with_reason": len(letters), "a_reason": letters[0].reason if letters else ""}

    def idle(self, seconds: float) -> dict[str, Any]:
        """Function executions while nothing happens, with the timer on its Azure cadence."""
        self.executions.clear()
        time.sleep(seconds)  # the measurement is of idleness itself
        counted = dict(self.executions)
        hours = seconds / 3600
        return {
            "seconds": seconds,
            "executions": counted,
            "per_hour": {name: round(n / hours, 1) for name, n in counted.items()},
            "timer_cadence_s": AZURE_TIMER_SECONDS,
        }


def wait_until(condition: Callable[[], object], *, timeout: float = 120.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout:.0f} s")
        time.sleep(every)


def rate(action: Callable[[int], object], count: int, *, threads: int) -> float:
    """Calls of `action(0..count-1)` per second, from `threads` threads."""
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(action, range(count)))
    return count / (time.perf_counter() - started)


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


if __name__ == "__main__":
    main()

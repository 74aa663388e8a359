"""What one reconciler pass costs, counted in store calls on the in-memory store (the bench counts them on the wire).

A steady pass reads the active runs once and decides on what it read: its calls do not grow
with the number of active runs, nor with history, and it never reads every job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from aztrain.adapters.memory import FakeComputeBackend, InMemoryControlStore, InMemoryDataStore, RecordingEventSink
from aztrain.domain.manifest import parse_manifest
from aztrain.domain.runs import Run, RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import Settings
from tests.clock import Clock

MANIFEST = "apiVersion: aztrain/v1\nkind: TrainingJob\nname: {name}\ndata: {{container: datasets, prefix: digits/}}\n"


class CountingStore:
    """The in-memory store, counting each call by method name."""

    def __init__(self) -> None:
        self.store = InMemoryControlStore()
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def plane_with(backend: FakeComputeBackend) -> tuple[ControlPlane, CountingStore]:
    store = CountingStore()
    data = InMemoryDataStore()
    data.write("datasets", "digits/seed.npz", b"seed")
    plane = ControlPlane(settings=Settings(), store=store, data=data, backend=backend, now=Clock())  # type: ignore[arg-type]
    return plane, store


def record(plane: ControlPlane, count: int, *, prefix: str = "job") -> list[Run]:
    """`count` runs recorded in ACCEPTED, as a handler leaves them."""
    runs = []
    for i in range(count):
        name = f"{prefix}-{i}"
        run = Run.create(
            id=f"{8232774399990 - i:013d}-{prefix[:2]}0000",
            job=name,
            state=RunState.ACCEPTED,
            at=plane.now(),
            trigger="http",
            cause=name,
            spec=parse_manifest(MANIFEST.format(name=name)),
        )
        runs.append(plane.store.add_run(run))
    return runs


def steady_pass_calls(active: int, *, finished: int = 0) -> Counter[str]:
    """Store calls of a pass over `active` runs waiting for nodes, after the pass that took their first step."""
    backend = FakeComputeBackend(provision_polls=10**9)  # nodes never come
    plane, store = plane_with(backend)
    if finished:
        backend.provision_polls = 0
        record(plane, finished, prefix="old")
        for _ in range(6):  # enough for the scripted backend to finish them
            plane.reconcile()
        backend.provision_polls = 10**9
    runs = record(plane, active)
    plane.reconcile()
    assert {plane.get_run(r.id).state for r in runs} == {RunState.PROVISIONING}
    store.calls.clear()
    plane.reconcile()
    return store.calls


def test_a_steady_pass_costs_the_same_at_any_number_of_active_runs_and_of_finished_ones():
    few, many, with_history = steady_pass_calls(3), steady_pass_calls(60), steady_pass_calls(3, finished=40)
    assert few == many == with_history
    assert few["get_run"] == 0 and few["save_run"] == 0  # decided on what the one read returned
    assert few["find_runs"] == 1


def test_a_pass_reads_the_watch_index_never_every_job():
    plane, store = plane_with(FakeComputeBackend())
    record(plane, 2)
    plane.reconcile()
    assert store.calls["list_jobs"] == 0 and store.calls["watching"] == 1


def test_with_nodes_ready_a_new_run_goes_from_accepted_to_submitted_in_one_pass_and_publishes_in_order():
    plane, _ = plane_with(FakeComputeBackend(provision_polls=0))
    sink = RecordingEventSink()
    plane.ctx = replace(plane.ctx, events=sink)
    (run,) = record(plane, 1)
    plane.reconcile()
    assert plane.get_run(run.id).state is RunState.SUBMITTED
    assert [e.type for e in sink.events] == [
        "aztrain.run.accepted",
        "aztrain.run.provisioning",
        "aztrain.run.submitted",
    ]
    assert plane.store.unpublished_runs() == []


def test_runs_waiting_for_one_cluster_ask_for_it_once_a_pass_and_submit_in_the_pass_it_is_up():
    backend = FakeComputeBackend(provision_polls=10**9)
    plane, _ = plane_with(backend)
    runs = record(plane, 20)
    plane.reconcile()  # their first steps: snapshot, nodes asked for, PROVISIONING
    asks = []
    ensure_cluster = backend.ensure_cluster
    backend.ensure_cluster = lambda spec: asks.append(spec) or ensure_cluster(spec)  # type: ignore[method-assign]
    plane.reconcile()
    assert len(asks) == 1
    backend.provision_polls = 0  # the nodes are up at the next ask
    plane.reconcile()
    assert {plane.get_run(r.id).state for r in runs} == {RunState.SUBMITTED}

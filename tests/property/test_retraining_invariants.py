"""Retraining invariants over generated sequences of uploads, submits, completions, failures, cancels and time.

Each sequence drives a fresh `ControlPlane` (the in-memory stores, and fewer sequences on Azurite) with the
scripted backend, whose runs stay RUNNING until a step ends them. After every step:

- no run trains on an empty snapshot, and a watching job without data starts no run;
- a run started without force never shares its snapshot with an active run, and the latest earlier run on
  that snapshot, if any, FAILED or was CANCELED; a window's run shares its snapshot with no earlier run;
- every arrival is pending, or consumed once (it never comes back) by a run whose snapshot holds its blob,
  or skipped by a window that said so;
- what `window` says is what the reconciler's window step then does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aztrain.adapters.memory import FakeComputeBackend, InMemoryControlStore, InMemoryDataStore
from aztrain.domain.records import JobPhase
from aztrain.domain.retrain import Window
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service.bootstrap import build_control_store, build_data_store
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.settings import Settings
from aztrain.service.usecases import capacity, progress, retraining
from tests.clock import Clock
from tests.conftest import CONTAINERS

JOB = "digits"
Step = tuple[Any, ...]


def manifest(prefix: str, policy: dict[str, Any]) -> bytes:
    return f"""
apiVersion: aztrain/v1
kind: TrainingJob
name: {JOB}
data: {{container: datasets, prefix: {prefix}}}
retrain:
  on_data_arrival: true
  debounce: {policy["debounce"]}s
  cooldown: {policy["cooldown"]}s
  min_new_blobs: {policy["min_new_blobs"]}
  concurrency: {policy["concurrency"]}
""".encode()


policies = st.fixed_dictionaries(
    {
        "debounce": st.sampled_from([0, 60]),
        "cooldown": st.sampled_from([0, 600]),
        "min_new_blobs": st.sampled_from([1, 2]),
        "concurrency": st.sampled_from(["queue", "skip", "replace"]),
    }
)
steps = st.lists(
    st.one_of(
        # which blob, and its BlobCreated event delivered once, twice, or late (at the next "late" step)
        st.tuples(st.just("upload"), st.integers(0, 3), st.sampled_from([1, 2, 0, 0])),
        st.tuples(st.just("late")),
        st.tuples(st.just("submit"), st.booleans()),  # forced
        st.tuples(st.just("end"), st.integers(0, 2), st.sampled_from([JobPhase.COMPLETED, JobPhase.FAILED])),
        st.tuples(st.just("cancel"), st.integers(0, 2)),
        st.tuples(st.just("tick"), st.sampled_from([0, 61, 700])),
    ),
    min_size=1,
    max_size=24,
)


def _started(run: Run) -> bool:
    """Past its first step: it has a snapshot, or it failed without one (which the invariants forbid)."""
    return bool(run.snapshot_id) or run.state not in (RunState.ACCEPTED, RunState.CANCELED)


@dataclass(frozen=True)
class Said:
    """What `window` said right before the reconciler's window step, and what was there then."""

    window: Window
    pending: dict[str, str]  # arrival key -> blob
    runs: set[str]


@dataclass
class Scenario:
    """One generated sequence on one plane, with what the checks need to remember between steps."""

    plane: ControlPlane
    prefix: str
    policy: dict[str, Any]
    forced: set[str] = field(default_factory=set)
    runs: dict[str, Run] = field(default_factory=dict)  # every run seen, as it was when last looked at
    pending: dict[str, str] = field(default_factory=dict)  # arrival key -> blob
    gone: set[str] = field(default_factory=set)  # arrival keys consumed or skipped: never pending again
    snapshots: dict[str, frozenset[str]] = field(default_factory=dict)
    undelivered: list[BlobEvent] = field(default_factory=list)
    uploads: int = 0

    def run(self, step: Step) -> None:
        before = dict(self.runs)
        said: Said | None = None
        match step:
            case ("upload", blob, deliveries):
                self.upload(f"{self.prefix}f{blob}.npz", deliveries)
            case ("late",):
                while self.undelivered:
                    self.plane.on_blob_created(self.undelivered.pop(0))
            case ("submit", force):
                self.submit(force)
            case ("end", index, phase):
                running = [r for r in self.active() if r.backend_job_id]
                if running:
                    self.plane.backend.jobs[running[index % len(running)].backend_job_id].phases = [phase]
            case ("cancel", index):
                active = self.active()
                if active:
                    self.plane.cancel(active[index % len(active)].id, cause="test")
            case ("tick", seconds):
                said = self.tick(seconds)
        self.check(before, said)

    def upload(self, name: str, deliveries: int) -> None:
        self.uploads += 1
        self.plane.data.write("datasets", name, f"{name}:{self.uploads}".encode())
        etag = next(b.etag for b in self.plane.data.list("datasets", name) if b.name == name)
        event = BlobEvent(id=f"ev-{name}-{etag}", container="datasets", name=name, etag=etag)
        if not deliveries:
            self.undelivered.append(event)
        for _ in range(deliveries):
            self.plane.on_blob_created(event)

    def submit(self, force: bool) -> None:
        result = self.plane.submit(
            manifest(self.prefix, self.policy), trigger="http", cause="c", source="http", force=force
        )
        if result.waiting:  # only while the prefix holds nothing: no run on an empty snapshot
            assert not self.plane.data.list("datasets", self.prefix)
        elif force and result.created:
            assert result.run is not None
            self.forced.add(result.run.id)

    def tick(self, seconds: int) -> Said | None:
        """The reconciler (`ControlPlane.reconcile`'s steps), with `window` asked right before its window step."""
        self.plane.now.advance(seconds)  # type: ignore[attr-defined]  # the test Clock
        ctx = self.plane.ctx
        said = None
        if self.plane.store.get_job(JOB):
            store = self.plane.store
            said = Said(
                retraining.window(ctx, JOB),
                {a.key: a.blob for a in store.pending_arrivals(JOB)},
                {r.id for r in store.find_runs(job=JOB)},
            )
        retraining.reconcile_windows(ctx)
        capacity.reconcile_clusters(ctx, progress.advance_all(ctx))
        return said

    def active(self) -> list[Run]:
        return self.plane.store.find_runs(job=JOB, states=ACTIVE_STATES)

    def snapshot(self, snapshot_id: str) -> frozenset[str]:
        if snapshot_id not in self.snapshots:
            self.snapshots[snapshot_id] = frozenset(b.name for b in self.plane.snapshot(snapshot_id).blobs)
        return self.snapshots[snapshot_id]

    def check(self, before: dict[str, Run], said: Said | None) -> None:
        now = {r.id: r for r in self.plane.store.find_runs(job=JOB)}
        # A run is recorded ACCEPTED and takes its snapshot at its first step (the reconciler's), unless
        # it is canceled first: the rules on new runs apply in the step that gives it one.
        started = {i: r for i, r in now.items() if _started(r)}
        before = {i: r for i, r in before.items() if _started(r)}
        new = sorted((r for r in started.values() if r.id not in before), key=lambda r: r.created_at)
        for run in started.values():  # no run on an empty snapshot (and none fails for want of data)
            assert run.snapshot_id and self.snapshot(run.snapshot_id), run
        for run in new:
            same = [r for r in sorted(before.values(), key=lambda r: r.created_at) if r.snapshot_id == run.snapshot_id]
            if run.trigger == "data":
                assert not same, f"a window fired on snapshot {run.snapshot_id}, which run {same[-1].id} has"
            elif run.id not in self.forced:
                assert not any(r.state in ACTIVE_STATES for r in same), f"{run.id} beside an active run on its data"
                assert not same or same[-1].state in (RunState.FAILED, RunState.CANCELED), (
                    f"{run.id} reran {same[-1].id}"
                )
            before[run.id] = run
        self.check_arrivals(started, new, said)
        self.runs = now

    def check_arrivals(self, now: dict[str, Run], new: list[Run], said: Said | None) -> None:
        arrivals = self.plane.store.pending_arrivals(JOB)
        pending = {a.key: a.blob for a in arrivals}
        assert not (self.gone & pending.keys()), "an arrival came back after it was consumed"
        for arrival in arrivals:
            # A run of any trigger takes its snapshot as it starts, and consumes the arrivals it holds.
            later = (r for r in now.values() if r.created_at > arrival.at)
            assert not any(arrival.blob in self.snapshot(r.snapshot_id) for r in later), f"{arrival.blob} still pending"
        served = set().union(*(self.snapshot(r.snapshot_id) for r in new)) if new else set()
        skipped = said is not None and said.window.action == "skip"
        taken: set[str] = set()  # consumed by a run that started in this step and trains on it
        # Pending before this step, or recorded in it (a delivery, or the window's step).
        for key, blob in (self.pending | (said.pending if said else {})).items():
            if key not in pending:  # consumed in this step: by a new run that trains on it, or a window's skip
                assert blob in served or skipped, f"arrival {blob} left pending with no run that has it"
                self.gone.add(key)
                if blob in served:
                    taken.add(key)
        self.pending = pending
        if said is None:
            return
        window = said.window
        data_runs = [r for r in new if r.trigger == "data" and r.id not in said.runs]
        if window.action == "launch":
            assert len(data_runs) == 1 and not (said.pending.keys() & pending.keys()), (window, data_runs)
        elif window.action == "skip":
            assert not data_runs and not (said.pending.keys() & pending.keys()), window
        else:  # a waiting window consumes nothing (a run that started after it in the pass may)
            assert not data_runs and said.pending.keys() - taken <= pending.keys(), window


def run_sequence(plane: ControlPlane, prefix: str, policy: dict[str, Any], todo: list[Step]) -> None:
    scenario = Scenario(plane, prefix, policy)
    for step in todo:
        scenario.run(step)


def backend() -> FakeComputeBackend:
    """The scripted backend, whose jobs run until a step ends them."""
    return FakeComputeBackend(script=(JobPhase.RUNNING,))


def memory_plane() -> ControlPlane:
    return ControlPlane(
        settings=Settings(), store=InMemoryControlStore(), data=InMemoryDataStore(), backend=backend(), now=Clock()
    )


#: News of an upload that arrives after a run already took the blob: the window must not fire on that data again.
LATE_NEWS = [("upload", 0, 0), ("submit", False), ("tick", 0), ("end", 0, JobPhase.COMPLETED), ("late",), ("tick", 61)]
NOTHING_HOLDS = {"debounce": 0, "cooldown": 0, "min_new_blobs": 1}


@settings(max_examples=500, deadline=None)
@given(policy=policies, todo=steps)
@example(policy={**NOTHING_HOLDS, "concurrency": "queue"}, todo=LATE_NEWS)
@example(
    policy={**NOTHING_HOLDS, "concurrency": "replace"},
    todo=[("upload", 1, 0), ("submit", True), ("late",), ("tick", 0)],
)
def test_invariants_hold_on_the_in_memory_plane(policy: dict[str, Any], todo: list[Step]) -> None:
    run_sequence(memory_plane(), "digits/", policy, todo)


@pytest.fixture(scope="module")
def azurite_plane(azurite: str) -> Callable[[], tuple[ControlPlane, str]]:
    """Each call: a plane on tables of its own and a data prefix of its own, on the session's Azurite."""
    build_data_store(Settings(storage_connection_string=azurite)).create_containers(CONTAINERS)

    def fresh() -> tuple[ControlPlane, str]:
        unique = uuid.uuid4().hex[:10]
        settings = Settings(storage_connection_string=azurite, table_prefix="p" + unique)
        store = build_control_store(settings)
        store.create_tables()
        plane = ControlPlane(
            settings=settings, store=store, data=build_data_store(settings), backend=backend(), now=Clock()
        )
        return plane, f"p{unique}/"

    return fresh


@pytest.mark.azurite
@settings(max_examples=25, deadline=None)
@given(policy=policies, todo=steps)
def test_invariants_hold_on_table_and_blob_storage(
    azurite_plane: Callable[[], tuple[ControlPlane, str]], policy: dict[str, Any], todo: list[Step]
) -> None:
    plane, prefix = azurite_plane()
    run_sequence(plane, prefix, policy, todo)

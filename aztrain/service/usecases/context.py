"""What every use case works with, and the one read-decide-write loop they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from aztrain.domain.errors import ConcurrencyError, NotFound
from aztrain.domain.runs import Run
from aztrain.service.ports import ComputeBackend, ControlStore, DataStore, EventSink, StepRequests
from aztrain.service.settings import Settings

T = TypeVar("T")

#: Lost races a decision is retried after before the caller sees `ConcurrencyError` (and Event Grid retries).
SAVE_ATTEMPTS = 5


@dataclass(frozen=True)
class Context:
    """The ports and settings a use case runs against; built once by `bootstrap`."""

    settings: Settings
    store: ControlStore
    data: DataStore
    backend: ComputeBackend
    now: Callable[[], datetime]
    events: EventSink | None = None  # None: no topic configured, events are recorded and not sent
    steps: StepRequests | None = None  # None: new runs' first steps wait for the reconciler

    def get_run(self, run_id: str) -> Run:
        """A run by id, or `NotFound`."""
        run = self.store.get_run(run_id)
        if run is None:
            raise NotFound("run", run_id)
        return run


def read_decide_write(
    read: Callable[[], T],
    decide: Callable[[T], T | None],
    write: Callable[[T], T],
    *,
    what: str,
    held: T | None = None,
) -> tuple[T, bool]:
    """Read, decide, write conditionally; on a lost race read again and decide again.

    `held` is the value as the caller has just stored or read it (with its ETag): the first
    decision is made on it instead of reading it again. Returns the stored value and whether
    this call wrote it (`decide` returning None writes nothing).
    """
    for _ in range(SAVE_ATTEMPTS):
        current = held if held is not None else read()
        held = None  # a lost race reads again
        changed = decide(current)
        if changed is None:
            return current, False
        try:
            return write(changed), True
        except ConcurrencyError:
            continue
    raise ConcurrencyError(what)

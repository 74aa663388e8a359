"""Named fault points at the control plane's step boundaries, for the reliability tests.

A use case calls `checkpoint("intake.after-job")` between two writes that a crash could
separate. In production no hook is installed and a checkpoint is one module-level None check;
a test installs a hook (`injected`) that raises at the points it names, and so proves that
redelivery and the reconciler converge from every one of them.

Points (the name says where the crash falls):

- `intake.after-job`: the job row names the run; the run row is not written yet.
- `runs.after-index`: a new run's copy is in the active index; its own row is not written yet.
- `progress.after-submit`: the backend accepted the job; the run does not record it yet.
- `progress.mid-reconcile`: the reconciler is between two active runs.
- `capacity.before-scale-down`: the last active run ended; the cluster is not yet told.
- `capacity.after-scale-down`: the cluster was told to go to zero; its record is not yet written.
- `retraining.after-window-claim`: a data window named its run; the run is not created yet.
- `publishing.before-publish`: a transition is recorded with its events staged; none is sent yet.
- `publishing.after-publish`: the events are sent; the run's outbox does not say so yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

POINTS = (
    "intake.after-job",
    "runs.after-index",
    "progress.after-submit",
    "progress.mid-reconcile",
    "capacity.before-scale-down",
    "capacity.after-scale-down",
    "retraining.after-window-claim",
    "publishing.before-publish",
    "publishing.after-publish",
)

_hook: Callable[[str], None] | None = None


class InjectedFault(RuntimeError):
    """The crash a test asked for at a named point."""


def checkpoint(point: str) -> None:
    """A step boundary: nothing happens unless a test installed a hook."""
    if _hook is not None:
        _hook(point)


@contextmanager
def injected(hook: Callable[[str], None]) -> Iterator[None]:
    """Call `hook(point)` at every checkpoint while the block runs (tests only)."""
    global _hook
    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous

"""The reconciler: the timer-driven backstop for every lost, late or duplicated event.

One pass, in this order: advance every active run from what its backend observes; act on the
retraining windows that are due; bring clusters (down) to size; publish what the outbox still holds.
"""

from __future__ import annotations

from aztrain.usecases import capacity, progress, publishing, retraining
from aztrain.usecases.context import Context


def reconcile(ctx: Context) -> None:
    """One reconciler pass (see the module docstring); each step isolates its own failures."""
    progress.advance_all(ctx)
    retraining.reconcile_windows(ctx)
    capacity.reconcile_clusters(ctx)
    publishing.drain_pending(ctx)

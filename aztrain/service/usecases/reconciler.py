"""The reconciler: the timer-driven backstop for every lost, late or duplicated event.

One pass, in this order: act on the blob events recorded since the last pass (manifests become
runs, uploads become arrivals: `inbox.process_inbox`); act on the retraining windows that are
due (so a run a window launches, or cancels, moves in the same pass); advance every active run
whose step could be due (a run just made takes its first steps at once); bring clusters (down)
to size, from the active runs as that left them; publish what the outbox still holds.
Its storage requests grow with the active runs only through the pages of one query of the index.
"""

from __future__ import annotations

from aztrain.service.usecases import capacity, inbox, progress, publishing, retraining
from aztrain.service.usecases.context import Context


def reconcile(ctx: Context) -> None:
    """One reconciler pass (see the module docstring); each step isolates its own failures."""
    inbox.process_inbox(ctx)
    retraining.reconcile_windows(ctx)
    active = progress.advance_all(ctx)
    capacity.reconcile_clusters(ctx, active)
    publishing.drain_pending(ctx)

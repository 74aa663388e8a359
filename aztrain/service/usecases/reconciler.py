"""The reconciler: the timer-driven backstop for every lost, late or duplicated event.

Events drive the control plane (the blob-events queue for intake, backend status events for job
progress, a run's own transitions for scaling); this pass, once a minute in Azure, catches what they
missed. In this order: act on the retraining windows that are due (so a run a window launches, or
cancels, moves in the same pass); advance every active run whose step could be due; bring clusters
(down) to size, from the active runs as that left them; publish what the outbox still holds.
Its storage requests grow with the active runs only through the pages of one query of the index.
"""

from __future__ import annotations

from aztrain.service.usecases import capacity, progress, publishing, retraining
from aztrain.service.usecases.context import Context


def reconcile(ctx: Context) -> None:
    """One reconciler pass (see the module docstring); each step isolates its own failures."""
    retraining.reconcile_windows(ctx)
    active = progress.advance_all(ctx)
    capacity.reconcile_clusters(ctx, active)
    publishing.drain_pending(ctx)

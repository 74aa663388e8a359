"""Timer trigger: the reconciler, backstop for every lost, late or duplicated event."""

from __future__ import annotations

import azure.functions as func

from aztrain.bootstrap import control_plane

bp = func.Blueprint()


@bp.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    """Every minute in Azure (the dev host runs it every few seconds): advance runs, scale idle clusters to zero."""
    control_plane().reconcile()

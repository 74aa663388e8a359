"""Timer trigger: the reconciler, backstop for every lost, late or duplicated event."""

from __future__ import annotations

import azure.functions as func

from aztrain.service.bootstrap import control_plane

bp = func.Blueprint()


# Every minute, a backstop: events drive the work (the blob-events queue, backend status events), so an
# idle control plane runs this and nothing else: 43,200 executions a month, inside Flex Consumption's
# free grant (docs/architecture.md, "Cost while idle"). No schedule monitor: a missed minute is caught
# by the next one, and the monitor would cost a blob write per tick.
@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def reconcile(timer: func.TimerRequest) -> None:
    """Once a minute in Azure (the dev host runs it every few seconds, for the local backend's jobs)."""
    control_plane().reconcile()

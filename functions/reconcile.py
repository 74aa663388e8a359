"""Timer trigger: the reconciler, backstop for every lost, late or duplicated event."""

from __future__ import annotations

import azure.functions as func

from aztrain.service.bootstrap import control_plane

bp = func.Blueprint()


# Every 10 s: handlers only record runs, so this pass takes each new run's first steps. A pass
# reads the active runs in one query, so running it often costs little (see README, Benchmarks).
@bp.timer_trigger(schedule="*/10 * * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    """Every 10 s in Azure (the dev host runs it every few seconds): advance runs, scale idle clusters to zero."""
    control_plane().reconcile()

"""A new run's first steps through the `run-steps` queue, so an HTTP submit does not wait for the reconciler.

The submit records the run and answers; one message naming the run is then queued, and its queue
trigger takes the run's steps (`take`). The message is a hint: `take` reads the run and decides, so a
redelivery, or the reconciler having done the same, changes nothing. A hint that cannot be queued is
logged and left to the reconciler's next pass (once a minute in Azure): the submit stands.
"""

from __future__ import annotations

import logging

from aztrain.domain.runs import Run, RunState
from aztrain.service.usecases import progress
from aztrain.service.usecases.context import Context

log = logging.getLogger(__name__)

#: The queue the hints go to and its trigger reads (infra/main.bicep `runStepsQueue`).
RUN_STEPS_QUEUE = "run-steps"


def request(ctx: Context, run: Run | None) -> None:
    """Queue a hint for a run just recorded ACCEPTED; a queue that refuses leaves it to the reconciler."""
    if run is None or run.state is not RunState.ACCEPTED or ctx.steps is None:
        return
    try:
        ctx.steps.request(run.id)
    except Exception:
        log.exception("run %s: first steps not queued; the reconciler's next pass takes them", run.id)


def take(ctx: Context, run_id: str) -> Run:
    """The steps due for a run now (none for a run already past them); `NotFound` for an unknown run."""
    return progress.advance(ctx, run_id)

"""A run's outbox fits its Table Storage property however many attempts the settings allow.

While the events topic is down nothing is drained, so a run preempted on every attempt carries each
transition in its `Outbox` column: a string property, at most 64 KiB of UTF-16 (Table service data model,
learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aztrain.adapters.storage.tables import _outbox_columns
from aztrain.domain.errors import ConfigError
from aztrain.domain.runs import Run, RunState
from aztrain.service.settings import MAX_PREEMPTION_ATTEMPTS_BOUND, Settings

PROPERTY_LIMIT_BYTES = 64 * 1024
#: Backend errors and causes can be any text; astral characters cost the most (two UTF-16 units each).
HOSTILE = "🔥" * 20_000


def test_a_run_preempted_on_every_allowed_attempt_still_fits_its_outbox_property() -> None:
    at = datetime(2026, 12, 4, tzinfo=UTC)
    run = Run.create(job="j" * 63, state=RunState.ACCEPTED, at=at, trigger="http", cause=HOSTILE[:200])
    steps = [RunState.PROVISIONING]
    for _ in range(MAX_PREEMPTION_ATTEMPTS_BOUND):
        steps += [RunState.SUBMITTED, RunState.QUEUED, RunState.RUNNING]
    steps += [RunState.CANCEL_REQUESTED, RunState.CANCELED]
    for number, state in enumerate(steps, 1):
        changes = {"attempt": 1 + (number - 2) // 3} if state is RunState.SUBMITTED else {}
        run = run.moved(
            state, cause=HOSTILE[:200], at=at + timedelta(seconds=number), detail=HOSTILE, **changes, cluster="c" * 32
        )
    assert len(run.outbox) == len(steps) + 1
    outbox = _outbox_columns(run)["Outbox"]
    assert len(outbox.encode("utf-16-le")) <= PROPERTY_LIMIT_BYTES


@pytest.mark.parametrize("value", ["0", str(MAX_PREEMPTION_ATTEMPTS_BOUND + 1), "2.5"])
def test_preemption_attempts_outside_the_bound_are_refused_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match=f"from 1 to {MAX_PREEMPTION_ATTEMPTS_BOUND}"):
        Settings.from_env({"AZTRAIN_MAX_PREEMPTION_ATTEMPTS": value})


def test_the_bound_itself_is_accepted() -> None:
    env = {"AZTRAIN_MAX_PREEMPTION_ATTEMPTS": str(MAX_PREEMPTION_ATTEMPTS_BOUND)}
    assert Settings.from_env(env).max_preemption_attempts == MAX_PREEMPTION_ATTEMPTS_BOUND

"""The fair queue's order: decayed usage over weight between teams, priority within one, and no starvation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aztrain.domain.fairshare import HALF_LIFE, STARVATION, Usage, Waiting, decayed, fair_order

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def waiting(run_id: str, team: str, *, priority: int = 0, ago: timedelta = timedelta(minutes=5)) -> Waiting:
    return Waiting(run_id, team, priority, NOW - ago)


def test_usage_halves_every_half_life() -> None:
    used = decayed([Usage("vision", 100.0, NOW - HALF_LIFE), Usage("nlp", 100.0, NOW)], NOW)
    assert used == {"vision": pytest.approx(50.0), "nlp": pytest.approx(100.0)}


def test_the_team_with_less_recent_usage_goes_first_whatever_the_arrival_order() -> None:
    queue = [waiting("v1", "vision", ago=timedelta(hours=2)), waiting("n1", "nlp", ago=timedelta(minutes=1))]
    assert [w.run_id for w in fair_order(queue, {"vision": 500.0, "nlp": 10.0}, NOW)] == ["n1", "v1"]


def test_within_a_team_higher_priority_then_older_goes_first() -> None:
    queue = [
        waiting("old", "vision", ago=timedelta(hours=1)),
        waiting("urgent", "vision", priority=5),
        waiting("new", "vision"),
    ]
    assert [w.run_id for w in fair_order(queue, {}, NOW)] == ["urgent", "old", "new"]


def test_a_run_that_waited_past_the_starvation_bound_goes_first() -> None:
    starving = waiting("starving", "vision", ago=STARVATION + timedelta(minutes=1))
    queue = [waiting("n1", "nlp"), starving]
    assert [w.run_id for w in fair_order(queue, {"vision": 1e9, "nlp": 0.0}, NOW)] == ["starving", "n1"]

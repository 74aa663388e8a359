"""The ledger and the teams table: the in-memory fake and Table Storage (on Azurite) behave the same."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from aztrain.domain.cost import CostEntry
from aztrain.domain.errors import ConcurrencyError
from aztrain.domain.teams import Team
from aztrain.service.ports import ControlStore


def entry(run_id: str, team: str, at: datetime, cost: float = 1.5) -> CostEntry:
    return CostEntry(
        run_id=run_id,
        job="digits",
        team=team,
        submitted_by="alice",
        ended_at=at,
        billed_seconds=60.0,
        gpu_seconds=120.0,
        cost=cost,
        vm_size="Standard_NC4as_T4_v3",
        tier="dedicated",
    )


def test_a_runs_cost_is_recorded_once_in_the_month_it_ended(run_store: ControlStore) -> None:
    dec = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    run_store.record_cost(entry("r1", "vision", dec))
    run_store.record_cost(entry("r1", "vision", dec, cost=99.0))  # a repeat changes nothing
    run_store.record_cost(entry("r2", "nlp", dec))
    run_store.record_cost(entry("r3", "vision", datetime(2027, 1, 1, tzinfo=UTC)))
    assert sorted((e.run_id, e.cost) for e in run_store.costs("2026-12")) == [("r1", 1.5), ("r2", 1.5)]
    assert [e.run_id for e in run_store.costs("2026-12", "vision")] == ["r1"]
    assert [e.ended_at for e in run_store.costs("2027-01")] == [datetime(2027, 1, 1, tzinfo=UTC)]


def test_teams_are_created_replaced_only_if_unchanged_listed_and_deleted(run_store: ControlStore) -> None:
    vision = run_store.put_team(Team("vision", gpus=8, monthly_budget=2000.0, max_priority=5))
    run_store.put_team(Team("nlp"))
    with pytest.raises(ConcurrencyError):
        run_store.put_team(Team("vision"))  # exists: a create loses
    updated = run_store.put_team(replace(vision, gpus=16))
    with pytest.raises(ConcurrencyError):
        run_store.put_team(replace(vision, gpus=4))  # stale ETag
    assert [(t.name, t.gpus, t.gpu_hours) for t in run_store.list_teams()] == [
        ("nlp", None, None),
        ("vision", 16, None),
    ]
    assert run_store.get_team("vision") == updated
    run_store.delete_team("nlp")
    run_store.delete_team("nlp")
    assert [t.name for t in run_store.list_teams()] == ["vision"] and run_store.get_team("nlp") is None

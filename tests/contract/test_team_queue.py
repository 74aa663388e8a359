"""Team quotas and the fair queue: a team over its GPUs or budget waits with the reason and starts when it
fits; between teams waiting for the same capacity, the one with less recent usage goes first
(on the fakes and on Azurite; the scripted backend's nodes have 4 vCPUs)."""

from __future__ import annotations

from datetime import timedelta

from aztrain.domain.cost import CostEntry
from aztrain.domain.identity import Principal
from aztrain.domain.runs import Run, RunState
from aztrain.domain.teams import Team
from aztrain.service.facade import ControlPlane
from aztrain.service.usecases import publishing
from tests.contract.conftest import drive

ALICE = Principal("alice", frozenset({"Runs.Submit", "Team.vision"}))
BOB = Principal("bob", frozenset({"Runs.Submit", "Team.nlp"}))
ROOT = Principal("root", frozenset({"Admin"}))


def submitted(plane: ControlPlane, name: str, by: Principal, *, extra: str = "", runtime: str = "2h") -> Run:
    text = f"""
apiVersion: aztrain/v1
kind: TrainingJob
name: {name}
data: {{container: datasets, prefix: digits/}}
compute: {{profile: gpu-small, nodes: 2, processes_per_node: 1, max_runtime: {runtime}}}
{extra}"""
    run = plane.submit(text.encode(), trigger="http", cause=name, source="http", by=by).run
    assert run is not None
    return run


def spent(plane: ControlPlane, team: str, *, cost: float = 0.0, gpu_hours: float = 0.0, ago: float = 3600) -> None:
    """A run of `team` that ended `ago` seconds ago, in the ledger."""
    at = plane.now() - timedelta(seconds=ago)
    plane.store.record_cost(
        CostEntry(f"old-{team}-{cost}-{gpu_hours}", "old", team, "", at, 60.0, gpu_hours * 3600, cost, "x", "dedicated")
    )


def test_a_team_over_its_gpus_waits_with_the_reason_and_starts_when_its_earlier_run_ends(plane: ControlPlane) -> None:
    plane.store.put_team(Team("vision", gpus=2))
    first = submitted(plane, "first", ALICE)
    plane.reconcile()
    second = submitted(plane, "second", ALICE)
    plane.reconcile()
    waiting = plane.get_run(second.id)
    assert waiting.state is RunState.QUEUED
    assert waiting.waiting_reason == "team vision holds 2 of 2 GPUs; this run needs 2"
    bobs = submitted(plane, "other-team", BOB)  # another team's run is not held by vision's bound
    plane.reconcile()
    assert plane.get_run(bobs.id).waiting_reason is None
    drive(plane, 8)
    assert plane.get_run(first.id).state is RunState.COMPLETED
    assert plane.get_run(second.id).state is RunState.COMPLETED


def test_a_team_past_its_budget_waits_with_the_reason(plane: ControlPlane) -> None:
    plane.store.put_team(Team("vision", monthly_budget=3.0))
    spent(plane, "vision", cost=2.0, ago=0)
    run = submitted(plane, "pricey", ALICE)
    plane.reconcile()
    waiting = plane.get_run(run.id)
    assert waiting.state is RunState.QUEUED
    # 2 nodes x 0.526 an hour x the default max_runtime of 2 h
    assert waiting.waiting_reason == "team vision has spent 2.00 of 3.00 this month; this run may cost up to 2.10"
    plane.store.put_team(Team("vision", monthly_budget=10.0, etag=plane.store.get_team("vision").etag))  # type: ignore[union-attr]
    plane.reconcile()
    assert plane.get_run(run.id).waiting_reason is None


def test_what_a_teams_bounds_can_never_admit_is_refused_at_submit(plane: ControlPlane) -> None:
    plane.store.put_team(Team("vision", gpus=1, monthly_budget=1.0, max_priority=3))
    refused = submitted(plane, "never", ALICE, extra="queue_priority: 5\n")
    assert refused.state is RunState.REJECTED
    assert "needs 2 GPUs; team vision may hold 1 at once" in refused.error
    assert "may cost up to 2.10, more than team vision's monthly budget of 1.00" in refused.error
    assert "queue_priority: 5 is above team vision's maximum of 3" in refused.error


def test_with_both_teams_waiting_the_team_with_less_recent_usage_goes_first(plane: ControlPlane) -> None:
    plane.backend.vcpu_quota = 8  # one run of two 4-vCPU nodes at a time
    spent(plane, "vision", gpu_hours=100)  # vision trained a lot an hour ago; nlp not at all
    blocker = submitted(plane, "blocker", ROOT)
    plane.reconcile()
    visions = submitted(plane, "vision-run", ALICE)  # waits first ...
    plane.reconcile()
    nlps = submitted(plane, "nlp-run", BOB)  # ... nlp's waits after it
    plane.reconcile()
    assert plane.get_run(visions.id).awaiting_admission and plane.get_run(nlps.id).awaiting_admission
    while not plane.get_run(blocker.id).is_terminal:
        plane.reconcile()
    plane.reconcile()
    assert not plane.get_run(nlps.id).awaiting_admission  # admitted first, though it came second
    assert plane.get_run(visions.id).awaiting_admission
    drive(plane, 12)
    assert plane.get_run(visions.id).state is RunState.COMPLETED  # and vision's follows: no one waits forever


def test_priority_orders_a_teams_own_waiting_runs(plane: ControlPlane) -> None:
    plane.store.put_team(Team("vision", gpus=2, max_priority=9))
    first = submitted(plane, "first", ALICE)
    plane.reconcile()
    low = submitted(plane, "low", ALICE)
    urgent = submitted(plane, "urgent", ALICE, extra="queue_priority: 9\n")
    plane.reconcile()
    assert plane.get_run(urgent.id).priority == 9 and plane.get_run(low.id).priority == 0
    while not plane.get_run(first.id).is_terminal:
        plane.reconcile()
    plane.reconcile()
    assert not plane.get_run(urgent.id).awaiting_admission and plane.get_run(low.id).awaiting_admission


def test_budget_thresholds_are_events_each_crossed_once_a_month(plane: ControlPlane) -> None:
    plane.store.put_team(Team("vision", monthly_budget=2.2))

    def finish(name: str) -> Run:
        run = submitted(plane, name, ALICE, runtime="1h")  # may cost up to 2 x 0.526
        plane.reconcile()
        assert plane.get_run(run.id).waiting_reason is None
        plane.now.advance(3800)  # type: ignore[attr-defined]
        while not plane.get_run(run.id).is_terminal:
            plane.reconcile()
        plane.reconcile()
        return plane.get_run(run.id)

    def crossed(run: Run) -> list[str]:
        assert run.last is not None
        return [e.id for e in publishing.budget_events(plane.ctx, run, run.last)]

    first = finish("first")  # about 1.11 of 2.20: past half
    assert crossed(first) == ["budget:vision:2026-01:50"]
    second = finish("second")  # about 2.22: past 80 % and the whole budget
    assert crossed(second) == ["budget:vision:2026-01:80", "budget:vision:2026-01:100"]
    assert crossed(first) == ["budget:vision:2026-01:50"]  # the same run, the same answer: sent again, one id

"""What runs cost: nodes x billed seconds x the price table's node-hour price, live and final, and the month's
report per team, job and day (on the fakes and on Azurite)."""

from __future__ import annotations

import pytest

from aztrain.domain.cost import price_table
from aztrain.domain.identity import Principal
from aztrain.domain.runs import RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.usecases import costing
from tests.contract.conftest import MANIFEST, drive

ALICE = Principal("alice", frozenset({"Runs.Submit", "Team.vision"}))


def finished(plane: ControlPlane, seconds: float) -> str:
    """A run of MANIFEST (2 nodes of gpu-small) that held its nodes about `seconds`, to the end."""
    run = plane.submit(MANIFEST, trigger="http", cause="r1", source="http", by=ALICE).run
    assert run is not None
    plane.reconcile()  # placed: PROVISIONING, and on the fake backend further at once
    plane.now.advance(seconds)  # type: ignore[attr-defined]
    drive(plane)
    done = plane.get_run(run.id)
    assert done.state is RunState.COMPLETED, done
    return done.id


def test_a_finished_runs_cost_is_its_billed_seconds_times_the_tables_price(plane: ControlPlane) -> None:
    run = plane.get_run(finished(plane, 3600))
    assert run.rate is not None and run.placed_at is not None
    price = price_table().node_hour("eastus", "Standard_NC4as_T4_v3", "dedicated")
    assert (run.rate.vm_size, run.rate.nodes, run.rate.gpus, run.rate.node_hour) == (
        "Standard_NC4as_T4_v3",
        2,
        2,
        price,
    )
    billed = (run.updated_at - run.placed_at).total_seconds()
    assert billed >= 3600
    assert costing.cost_of(run, plane.now()) == pytest.approx(2 * billed * price / 3600)


def test_the_months_report_holds_the_finished_run_once_per_team_job_and_day(plane: ControlPlane) -> None:
    run = plane.get_run(finished(plane, 1800))
    drive(plane)  # a second drain records nothing twice
    report = plane.cost_report()
    expected = costing.cost_of(run, plane.now())
    assert report.teams["vision"].final == pytest.approx(expected) and report.teams["vision"].runs == 1
    assert report.jobs[("vision", "digits")].final == pytest.approx(expected)
    assert report.days[("vision", run.updated_at.date().isoformat())].final == pytest.approx(expected)
    assert plane.cost_report("2025-12").teams == {}


def test_a_running_run_costs_live_until_it_ends(plane: ControlPlane) -> None:
    run = plane.submit(MANIFEST, trigger="http", cause="r1", source="http", by=ALICE).run
    assert run is not None
    plane.reconcile()
    plane.now.advance(600)  # type: ignore[attr-defined]
    report = plane.cost_report(team="vision")
    assert report.teams["vision"].final == 0 and report.teams["vision"].live > 0

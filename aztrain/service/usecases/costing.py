"""What runs cost: a run's rate when it is placed, its cost live and final, the ledger, and the report.

A run's rate is fixed as it is placed (enters PROVISIONING): the VM size and tier of the compute
profile it runs on, its nodes and GPUs, and the price table's node-hour price in the configured
region (`aztrain.domain.cost`). Its cost is nodes x billed seconds x that price, live while it
runs (from its copy in the active index: no read) and final once it ends, when it is recorded in
the ledger (`costs`, by the month it ended). The report is that month's ledger plus the live cost
of the runs still active: it reads what the month's activity wrote, never all history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from aztrain.domain.cost import CostEntry, Rate, billed_seconds, month_of, price_table
from aztrain.domain.errors import AztrainError
from aztrain.domain.identity import DEFAULT_TEAM
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.profiles import TIER_FOR_PRIORITY, ComputeProfile, load_profiles, select_profile
from aztrain.domain.runs import ACTIVE_STATES, Run
from aztrain.service.usecases.context import Context

log = logging.getLogger(__name__)


def rate_for(ctx: Context, compute: ComputeSpec) -> Rate:
    """What a run of `compute` would pay an hour in this region, by the price table.

    A profile aztrain does not know (a local test profile) is priced by the backend's VM size; a size
    the table has no price for costs nothing, and says so in the log, rather than stop the run.
    """
    spec = ctx.backend.cluster_for(compute)
    tier = TIER_FOR_PRIORITY[compute.priority]
    try:
        profile = select_profile(_profiles(ctx.settings.compute_profiles), compute)
        vm_size, gpus = profile.vm_size, compute.nodes * profile.gpus_per_node
    except AztrainError:
        vm_size, gpus = spec.vm_size, compute.nodes * compute.processes_per_node  # a process per GPU
    table = price_table()
    try:
        node_hour = table.node_hour(ctx.settings.region, vm_size, tier)
    except AztrainError as exc:
        log.info("no price: %s", exc)
        node_hour = 0.0
    return Rate(
        vm_size=vm_size,
        tier=tier,
        region=ctx.settings.region,
        nodes=compute.nodes,
        gpus=gpus,
        node_hour=node_hour,
        currency=table.currency,
    )


@cache
def _profiles(raw: str) -> dict[str, ComputeProfile]:
    """The compute profiles a setting names, parsed once (the admission gates ask for every waiting run)."""
    return load_profiles(raw)


def ended_at(run: Run) -> datetime | None:
    """When a finished run ended (its last transition), None while it is active."""
    return run.updated_at if run.is_terminal else None


def cost_of(run: Run, now: datetime) -> float:
    """The run's cost so far (final once it has ended)."""
    return run.rate.cost(billed_seconds(run.placed_at, ended_at(run), now)) if run.rate else 0.0


def gpu_seconds(run: Run, now: datetime) -> float:
    """GPU-seconds the run has held so far (what quotas and the fair queue count)."""
    return run.rate.gpus * billed_seconds(run.placed_at, ended_at(run), now) if run.rate else 0.0


def entry_for(run: Run) -> CostEntry:
    """A finished run's ledger entry."""
    end = run.updated_at
    rate = run.rate
    return CostEntry(
        run_id=run.id,
        job=run.job,
        team=run.team or DEFAULT_TEAM,
        submitted_by=run.submitted_by,
        ended_at=end,
        billed_seconds=billed_seconds(run.placed_at, end, end),
        gpu_seconds=gpu_seconds(run, end),
        cost=cost_of(run, end),
        vm_size=rate.vm_size if rate else "",
        tier=rate.tier if rate else "",
    )


def record_final(ctx: Context, run: Run) -> None:
    """Put a finished run's final cost in the ledger (once: a repeat changes nothing)."""
    if run.is_terminal and run.placed_at is not None:
        ctx.store.record_cost(entry_for(run))


@dataclass
class Spend:
    """What one team (or one job, or one day) spent: final from the ledger, plus live from active runs."""

    final: float = 0.0
    live: float = 0.0
    gpu_seconds: float = 0.0
    runs: int = 0

    @property
    def total(self) -> float:
        return self.final + self.live


@dataclass
class Report:
    """A month's spend per team, per job and per day."""

    month: str
    currency: str
    teams: dict[str, Spend] = field(default_factory=dict)
    jobs: dict[tuple[str, str], Spend] = field(default_factory=dict)  # (team, job)
    days: dict[tuple[str, str], Spend] = field(default_factory=dict)  # (team, YYYY-MM-DD)


def report(ctx: Context, month: str | None = None, *, team: str | None = None) -> Report:
    """The month's (default: this month's) spend: its ledger, plus the live cost of active runs when it is now."""
    now = ctx.now()
    month = month or month_of(now)
    result = Report(month=month, currency=price_table().currency)
    entries = ctx.store.costs(month, team)
    for entry in entries:
        _add(result, entry.team, entry.job, entry.day, final=entry.cost, gpu_seconds=entry.gpu_seconds)
    if month == month_of(now):
        recorded = {e.run_id for e in entries}
        for run in _live(ctx, team, recorded):
            day = now.date().isoformat()
            _add(
                result,
                run.team or DEFAULT_TEAM,
                run.job,
                day,
                live=cost_of(run, now),
                gpu_seconds=gpu_seconds(run, now),
            )
    return result


def _live(ctx: Context, team: str | None, recorded: set[str]) -> Iterable[Run]:
    """Active runs that hold nodes and are not in the ledger yet (copies in the index: one query)."""
    for run in ctx.store.find_runs(states=ACTIVE_STATES):
        if run.placed_at is not None and run.id not in recorded and team in (None, run.team or DEFAULT_TEAM):
            yield run


def _add(
    report: Report, team: str, job: str, day: str, *, final: float = 0.0, live: float = 0.0, gpu_seconds: float
) -> None:
    for spend in (
        report.teams.setdefault(team, Spend()),
        report.jobs.setdefault((team, job), Spend()),
        report.days.setdefault((team, day), Spend()),
    ):
        spend.final += final
        spend.live += live
        spend.gpu_seconds += gpu_seconds
        spend.runs += 1

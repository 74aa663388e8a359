"""What a submit would do, without doing it: placement, cost bound, expected cost, admission and the wait.

Nothing is recorded: the manifest is parsed and checked as a submit would (`ManifestError` for an invalid
one, `Forbidden` for a caller who may not submit it), and a run that is never stored is put to the
admission gates over the active runs' copies (one index query, plus what the gates read once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aztrain.domain.cost import Rate
from aztrain.domain.identity import Principal
from aztrain.domain.manifest import parse_manifest
from aztrain.domain.records import ClusterSpec
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service.usecases import admission, costing, teamgates
from aztrain.service.usecases.context import Context

#: Earlier runs of the job whose cost the expected cost is the mean of.
EARLIER_RUNS = 10


@dataclass(frozen=True)
class DryRun:
    """The answer of a dry run."""

    job: str
    team: str
    priority: int
    placement: ClusterSpec
    rate: Rate
    cost_bound: float  # nodes x node-hour price x max_runtime
    expected_cost: float | None  # the mean final cost of the job's earlier runs, None without any
    refusals: list[str]  # why it could never be admitted (a submit would be REJECTED)
    waiting_reason: str | None  # None: admitted now
    estimated_wait_seconds: float | None  # when it would wait: until enough of what holds it ends (None: unknown)


def dry_run(ctx: Context, manifest_text: str | bytes, *, by: Principal) -> DryRun:
    """What submitting `manifest_text` as `by` would lead to now (see the module docstring)."""
    parsed = parse_manifest(manifest_text, source="http", max_bytes=ctx.settings.max_manifest_bytes)
    manifest = parsed.model_copy(update={"team": by.submitting_team(parsed.team)})
    spec = ctx.backend.cluster_for(manifest.compute)
    rate = costing.rate_for(ctx, manifest.compute)
    now = ctx.now()
    run = Run.create(
        job=manifest.name,
        state=RunState.ACCEPTED,
        at=now,
        trigger="http",
        cause="dry-run",
        spec=manifest,
        team=manifest.team or "",
        priority=teamgates.priority_for(ctx, manifest),
    )
    refusals = [str(problem) for problem in admission.refusals(ctx, manifest)]
    active = [r for r in ctx.store.find_runs(states=ACTIVE_STATES) if r.spec is not None]
    reason = None if refusals else admission.waiting_reason(ctx, run, teamgates.Copies([*active, run], {}))
    return DryRun(
        job=manifest.name,
        team=run.team,
        priority=run.priority,
        placement=spec,
        rate=rate,
        cost_bound=rate.cost(manifest.compute.max_runtime),
        expected_cost=_expected(ctx, manifest.name, now),
        refusals=refusals,
        waiting_reason=reason,
        estimated_wait_seconds=_wait(ctx, run, rate, reason, active, now) if reason else None,
    )


def _expected(ctx: Context, job: str, now: datetime) -> float | None:
    """The mean final cost of the job's latest finished runs that were placed (one bounded read)."""
    earlier = [r for r in ctx.store.find_runs(job=job, limit=EARLIER_RUNS) if r.is_terminal and r.rate]
    return sum(costing.cost_of(r, now) for r in earlier) / len(earlier) if earlier else None


def _wait(ctx: Context, run: Run, rate: Rate, reason: str, active: list[Run], now: datetime) -> float | None:
    """Until the runs holding what this one needs have ended, each at the latest by its `max_runtime`.

    Held by its team's GPUs: its team's runs; by capacity: every run holding nodes. A budget waits for
    the next month; GPU-hours for usage to leave the 30-day window, which this does not estimate.
    """
    if "GPU-hours" in reason:
        return None
    if "this month" in reason:
        first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=now.tzinfo)
        return (first - now).total_seconds()
    mine = reason.startswith(teamgates.TEAM_REASON)
    holders = [r for r in active if teamgates.holds(r) and (not mine or teamgates.team_of(r) == run.team)]
    ends = sorted((_end(r, now), teamgates.gpus_of(ctx, r)) for r in holders)
    freed = 0
    for end, gpus in ends:
        freed += gpus
        if freed >= rate.gpus:
            return max(0.0, (end - now).total_seconds())
    return max(((end - now).total_seconds() for end, _ in ends), default=None)


def _end(run: Run, now: datetime) -> datetime:
    started = run.placed_at or now
    return started + timedelta(seconds=run.manifest.compute.max_runtime)

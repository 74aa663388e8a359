"""Team gates of admission: GPUs held at once, GPU-hours per rolling 30 days, the monthly budget, and the fair queue.

Each gate is an `admission.Gate`; a reason it answers starts with "team " (the backend's gate knows a
run held by its own team from that, and never keeps capacity for it). What the gates read of storage
(the `teams` table and this and last month's ledger) is read once a pass, into a `Book` the pass's
copies carry (`Copies`); the active runs' part (GPUs held, GPU-seconds and money so far) comes from
the copies themselves. So a pass costs the same requests however many runs wait or ended before.

The fair queue (`ahead`): among runs waiting for the same capacity, the order of
`aztrain.domain.fairshare` (teams by decayed usage over weight, then priority, then age; starving runs
first). Within a team, GPUs that runs ahead of a run wait for count as taken, so a big run is not
passed forever by small ones.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aztrain.domain.cost import month_of
from aztrain.domain.errors import FieldProblem
from aztrain.domain.fairshare import WINDOW, FairKey, Usage, Waiting, decayed, fair_key
from aztrain.domain.identity import DEFAULT_TEAM
from aztrain.domain.manifest import JobManifest
from aztrain.domain.runs import Run, RunState
from aztrain.domain.teams import Team
from aztrain.service.usecases import costing
from aztrain.service.usecases.context import Context

TEAM_REASON = "team "


class Copies(list[Run]):
    """The active copies as a pass has them, with what the pass has read for the team gates (`memo`)."""

    def __init__(self, runs: Iterable[Run], memo: dict[str, Any]) -> None:
        super().__init__(runs)
        self.memo = memo


@dataclass
class Book:
    """What the ledger and the teams table say, read once a pass."""

    teams: dict[str, Team]
    now: datetime
    month_spent: dict[str, float] = field(default_factory=dict)  # final cost of runs that ended this month
    window_gpu_seconds: dict[str, float] = field(default_factory=dict)  # of runs that ended in the last 30 days
    usage: list[Usage] = field(default_factory=list)


def read_book(ctx: Context) -> Book:
    """Teams and ledger, in three queries: the teams, this month's ledger and last month's."""
    now = ctx.now()
    book = Book(teams={t.name: t for t in ctx.store.list_teams()}, now=now)
    since = now - WINDOW
    months = {month_of(now), month_of(since)}
    for month in sorted(months):
        for entry in ctx.store.costs(month):
            if entry.month == month_of(now):
                book.month_spent[entry.team] = book.month_spent.get(entry.team, 0.0) + entry.cost
            if entry.ended_at >= since:
                book.window_gpu_seconds[entry.team] = book.window_gpu_seconds.get(entry.team, 0.0) + entry.gpu_seconds
                book.usage.append(Usage(entry.team, entry.gpu_seconds, entry.ended_at))
    return book


def book_of(ctx: Context, copies: Sequence[Run]) -> Book:
    """The pass's book (read on first use), or a fresh one for a caller outside a pass."""
    memo = getattr(copies, "memo", None)
    if memo is None:
        return read_book(ctx)
    if "book" not in memo:
        memo["book"] = read_book(ctx)
    book: Book = memo["book"]
    return book


def team_of(run: Run) -> str:
    return run.team or DEFAULT_TEAM


def holds(run: Run) -> bool:
    """Whether a run holds (or was admitted to take) nodes: neither waiting for admission nor just accepted."""
    return not run.is_terminal and run.state is not RunState.ACCEPTED and not run.awaiting_admission


def gpus_of(ctx: Context, run: Run, copies: Sequence[Run] = ()) -> int:
    """The GPUs a run holds or would: its rate's, else its compute's (once a pass per run)."""
    if run.rate:
        return run.rate.gpus
    cache: dict[str, int] = _memo(copies, "gpus")
    if run.id not in cache:
        cache[run.id] = costing.rate_for(ctx, run.manifest.compute).gpus
    return cache[run.id]


def _memo(copies: Sequence[Run], name: str) -> dict[Any, Any]:
    """A table the pass keeps (a fresh one for a caller outside a pass)."""
    memo = getattr(copies, "memo", None)
    if memo is None:
        return {}
    table: dict[Any, Any] = memo.setdefault(name, {})
    return table


# ----------------------------------------------------------------------------------------- the queue
def standings(ctx: Context, copies: Sequence[Run]) -> dict[str, float]:
    """Each team's decayed usage (ended runs' from the book, running runs' so far) over its weight; once a pass."""
    memo = getattr(copies, "memo", None)
    if memo is not None and "standings" in memo:
        cached: dict[str, float] = memo["standings"]
        return cached
    book = book_of(ctx, copies)
    live = [Usage(team_of(r), costing.gpu_seconds(r, book.now), book.now) for r in copies if holds(r) and r.rate]
    used = decayed([*book.usage, *live], book.now)
    result = {team: value / max(book.teams.get(team, Team(team)).weight, 1e-9) for team, value in used.items()}
    if memo is not None:
        memo["standings"] = result
    return result


def ahead(ctx: Context, other: Run, run: Run, copies: Sequence[Run]) -> bool:
    """Whether waiting `other` goes before waiting `run` in the fair queue."""
    return other.id != run.id and _key(ctx, other, copies) < _key(ctx, run, copies)


def _key(ctx: Context, run: Run, copies: Sequence[Run]) -> FairKey:
    keys: dict[str, FairKey] = _memo(copies, "keys")
    if run.id not in keys:
        keys[run.id] = fair_key(_waiting(run), standings(ctx, copies), book_of(ctx, copies).now)
    return keys[run.id]


def _gpus_ahead(ctx: Context, team: str, run: Run, copies: Sequence[Run]) -> int:
    """GPUs the team's runs ahead of `run` in the queue wait for: its waiting runs sorted once a pass.

    A run admitted earlier in the pass still counts here as well as among those held: at worst a run
    waits one more pass.
    """
    queues: dict[str, tuple[list[FairKey], list[int]]] = _memo(copies, "queues")
    if team not in queues:
        waiting = sorted(
            (
                (_key(ctx, c, copies), gpus_of(ctx, c, copies))
                for c in copies
                if team_of(c) == team and c.awaiting_admission
            ),
        )
        totals = [0]
        for _, gpus in waiting:
            totals.append(totals[-1] + gpus)
        queues[team] = ([key for key, _ in waiting], totals)
    keys, totals = queues[team]
    return totals[bisect_left(keys, _key(ctx, run, copies))]


def _waiting(run: Run) -> Waiting:
    return Waiting(run_id=run.id, team=team_of(run), priority=run.priority, since=run.created_at)


# ----------------------------------------------------------------------------------------- the gates
def team_gpus(ctx: Context, run: Run, copies: Sequence[Run]) -> str | None:
    """Wait while the team's runs hold (or wait ahead for) so many GPUs that this run's would go over its limit."""
    team = book_of(ctx, copies).teams.get(team_of(run))
    if team is None or team.gpus is None:
        return None
    held = sum(gpus_of(ctx, c, copies) for c in copies if team_of(c) == team.name and c.id != run.id and holds(c))
    before = _gpus_ahead(ctx, team.name, run, copies)
    need = gpus_of(ctx, run, copies)
    if held + before + need <= team.gpus:
        return None
    waits = f"; runs ahead of this one wait for {before} more" if before else ""
    return f"team {team.name} holds {held} of {team.gpus} GPUs{waits}; this run needs {need}"


def team_gpu_hours(ctx: Context, run: Run, copies: Sequence[Run]) -> str | None:
    """Wait while the team has used its GPU-hours of the last 30 days (ended runs and running ones so far)."""
    book = book_of(ctx, copies)
    team = book.teams.get(team_of(run))
    if team is None or team.gpu_hours is None:
        return None
    live = sum(costing.gpu_seconds(c, book.now) for c in copies if team_of(c) == team.name and holds(c))
    used = (book.window_gpu_seconds.get(team.name, 0.0) + live) / 3600
    if used < team.gpu_hours:
        return None
    return f"team {team.name} has used {used:,.1f} of {team.gpu_hours:,.0f} GPU-hours in the last 30 days"


def team_budget(ctx: Context, run: Run, copies: Sequence[Run]) -> str | None:
    """Wait while this month's spend, what running runs cost so far, and this run's bound exceed the budget."""
    book = book_of(ctx, copies)
    team = book.teams.get(team_of(run))
    if team is None or team.monthly_budget is None:
        return None
    live = sum(costing.cost_of(c, book.now) for c in copies if team_of(c) == team.name and holds(c))
    spent = book.month_spent.get(team.name, 0.0) + live
    bound = cost_bound(ctx, run.manifest)
    if spent + bound <= team.monthly_budget:
        return None
    return (
        f"team {team.name} has spent {spent:,.2f} of {team.monthly_budget:,.2f} this month; "
        f"this run may cost up to {bound:,.2f}"
    )


def cost_bound(ctx: Context, manifest: JobManifest) -> float:
    """The most a run of `manifest` can cost: nodes x node-hour price x `max_runtime`."""
    return costing.rate_for(ctx, manifest.compute).cost(manifest.compute.max_runtime)


GATES = [team_gpus, team_gpu_hours, team_budget]


# -------------------------------------------------------------------------------------- refusals
def team_refusal(ctx: Context, manifest: JobManifest) -> list[FieldProblem]:
    """Refuse what the team's bounds can never admit: more GPUs than it may hold, a bound above its budget."""
    team = ctx.store.get_team(manifest.team or DEFAULT_TEAM)
    if team is None:
        return []
    problems = []
    gpus = costing.rate_for(ctx, manifest.compute).gpus
    if team.gpus is not None and gpus > team.gpus:
        problems.append(FieldProblem("compute", f"needs {gpus} GPUs; team {team.name} may hold {team.gpus} at once"))
    bound = cost_bound(ctx, manifest)
    if team.monthly_budget is not None and bound > team.monthly_budget:
        problems.append(
            FieldProblem(
                "compute.max_runtime",
                f"this run may cost up to {bound:,.2f}, more than team {team.name}'s monthly "
                f"budget of {team.monthly_budget:,.2f}; ask for fewer nodes or a shorter max_runtime",
            )
        )
    if manifest.queue_priority is not None and manifest.queue_priority > team.max_priority:
        problems.append(
            FieldProblem(
                "queue_priority",
                f"{manifest.queue_priority} is above team {team.name}'s maximum of {team.max_priority}",
            )
        )
    return problems


def priority_for(ctx: Context, manifest: JobManifest) -> int:
    """A new run's priority: its manifest's, else its team's default (0 for a team without a row)."""
    if manifest.queue_priority is not None:
        return manifest.queue_priority
    team = ctx.store.get_team(manifest.team or DEFAULT_TEAM)
    return team.priority_for(None) if team else 0

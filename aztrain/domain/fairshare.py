"""The fair queue: which waiting run goes next when several teams wait for the same capacity.

Policy (anchored on Slurm's classic fair share, slurm.schedmd.com/classic_fair_share.html:
usage decayed with a half-life, divided by the share): a team's usage is the GPU-seconds of its
runs, each ended run's decayed by `HALF_LIFE` per half-life since it ended, plus what its running
runs have used so far; its standing is usage / weight. Waiting runs are taken from the team with the
lowest standing first, by priority (higher first) within a team, then oldest first. No run waits
forever: one waiting longer than `STARVATION` goes ahead of every run that has waited less.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

HALF_LIFE = timedelta(days=7)  # Slurm's PriorityDecayHalfLife default
#: How far back usage counts at all (the rolling window GPU-hour quotas use too).
WINDOW = timedelta(days=30)
STARVATION = timedelta(hours=6)


@dataclass(frozen=True)
class Usage:
    """GPU-seconds a team used, and when (the end of an ended run; `now` for one still running)."""

    team: str
    gpu_seconds: float
    at: datetime


def decayed(usages: Iterable[Usage], now: datetime, *, half_life: timedelta = HALF_LIFE) -> dict[str, float]:
    """Each team's usage, decayed: a GPU-second used one half-life ago counts half."""
    totals: dict[str, float] = {}
    for usage in usages:
        age = max(0.0, (now - usage.at).total_seconds())
        totals[usage.team] = totals.get(usage.team, 0.0) + usage.gpu_seconds * 0.5 ** (age / half_life.total_seconds())
    return totals


@dataclass(frozen=True)
class Waiting:
    """A run waiting for capacity, as the queue sees it."""

    run_id: str
    team: str
    priority: int
    since: datetime  # when it was submitted


FairKey = tuple[bool, float, float, int, datetime, str]


def fair_key(
    w: Waiting, standing: Mapping[str, float], now: datetime, *, starvation: timedelta = STARVATION
) -> FairKey:
    """A waiting run's place in the fair queue: lower goes first."""
    starving = now - w.since >= starvation
    return (
        not starving,
        # Starving runs go oldest first; the others by their team's standing, then priority.
        -(now - w.since).total_seconds() if starving else 0.0,
        0.0 if starving else standing.get(w.team, 0.0),
        -w.priority,
        w.since,
        w.run_id,
    )


def fair_order(
    waiting: Iterable[Waiting],
    standing: Mapping[str, float],
    now: datetime,
    *,
    starvation: timedelta = STARVATION,
) -> list[Waiting]:
    """`waiting` in the order the fair queue admits them (see the module docstring)."""
    return sorted(waiting, key=lambda w: fair_key(w, standing, now, starvation=starvation))


def standings(usage: Mapping[str, float], weights: Callable[[str], float]) -> dict[str, float]:
    """Each team's usage divided by its weight: lower goes first."""
    return {team: used / max(weights(team), 1e-9) for team, used in usage.items()}

"""Teams and their bounds, as an admin sets them (`aztrain teams ...`, `PUT /api/teams/{team}`)."""

from __future__ import annotations

from dataclasses import replace

from aztrain.domain.errors import ConcurrencyError
from aztrain.domain.identity import Principal
from aztrain.domain.teams import Team
from aztrain.service.usecases.context import SAVE_ATTEMPTS, Context


def set_team(ctx: Context, team: Team, *, by: Principal) -> Team:
    """Create the team or replace its bounds with `team`'s; `Forbidden` unless `by` is an admin."""
    by.require_admin(f"set the bounds of team {team.name}")
    for _ in range(SAVE_ATTEMPTS):
        current = ctx.store.get_team(team.name)
        try:
            return ctx.store.put_team(replace(team, etag=current.etag if current else None))
        except ConcurrencyError:  # another admin's write won: replace theirs, as this one was asked last
            continue
    raise ConcurrencyError(f"team {team.name}")


def delete_team(ctx: Context, name: str, *, by: Principal) -> None:
    """Forget a team's bounds (its runs keep their team); `Forbidden` unless `by` is an admin."""
    by.require_admin(f"delete team {name}")
    ctx.store.delete_team(name)

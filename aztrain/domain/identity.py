"""Who calls and what they may do: a signed-in user, their Entra app roles, and the teams those name.

Roles are app roles of the control plane's Entra app registration, assigned to users (or groups)
by an admin (docs/teams.md): `Admin` may do anything; `Runs.Submit` submits and cancels the runs of
the caller's teams; `Team.<name>` makes the caller a member of team `<name>`. Reading needs only a
signed-in user. A run belongs to one team, recorded on it with who submitted it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aztrain.domain.errors import Forbidden

ADMIN = "Admin"
SUBMITTER = "Runs.Submit"
TEAM_ROLE_PREFIX = "Team."
#: The team of runs nobody named a team for: manifests dropped straight under `manifests/`, and an admin's.
DEFAULT_TEAM = "default"


def team_role(team: str) -> str:
    """The app role that makes a user a member of `team`."""
    return TEAM_ROLE_PREFIX + team


@dataclass(frozen=True)
class Principal:
    """A signed-in caller: a user name (their UPN in Entra) and the app roles they hold."""

    user: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def teams(self) -> tuple[str, ...]:
        """The teams the caller is a member of, by name."""
        return tuple(sorted(r[len(TEAM_ROLE_PREFIX) :] for r in self.roles if r.startswith(TEAM_ROLE_PREFIX)))

    def submitting_team(self, asked: str | None) -> str:
        """The team of a run this caller submits: `asked`, else their only team; `Forbidden` if they may not."""
        if self.is_admin:
            return asked or (self.teams[0] if len(self.teams) == 1 else DEFAULT_TEAM)
        if SUBMITTER not in self.roles:
            raise Forbidden(f"{self.user} may not submit runs", missing=f"app role {SUBMITTER}")
        if asked:
            self.require_member(asked, "submit runs of")
            return asked
        if len(self.teams) == 1:
            return self.teams[0]
        if not self.teams:
            raise Forbidden(f"{self.user} is in no team", missing=f"app role {TEAM_ROLE_PREFIX}<team>")
        raise Forbidden(
            f"{self.user} is in teams {', '.join(self.teams)}: name one in the manifest (team: <name>)",
            missing="the manifest's team",
        )

    def require_member(self, team: str, doing: str) -> None:
        """`Forbidden` unless the caller is an admin or a member of `team`."""
        if not self.is_admin and team not in self.teams:
            raise Forbidden(f"{self.user} may not {doing} team {team}", missing=f"app role {team_role(team)}")

    def require_canceller(self, team: str) -> None:
        """`Forbidden` unless the caller may cancel a run of `team`: an admin, or a submitter in that team."""
        if self.is_admin:
            return
        if SUBMITTER not in self.roles:
            raise Forbidden(f"{self.user} may not cancel runs", missing=f"app role {SUBMITTER}")
        self.require_member(team, "cancel runs of")

    def require_admin(self, doing: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"{self.user} may not {doing}", missing=f"app role {ADMIN}")

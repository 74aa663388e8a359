"""Sign-in on the dev host: it plays App Service Authentication's part for local users.

In Azure the platform signs the caller in with Entra ID and injects `X-MS-CLIENT-PRINCIPAL`;
callers cannot set it themselves. Here the dev host does the same: it drops any principal a
request carries and injects the one of the user the request names in `X-Aztrain-User` (the CLI's
`--user`), looked up in a users file, TOML:

    default = "alice"                     # optional: the user of requests that name none
    [users.alice]
    roles = ["Runs.Submit", "Team.vision"]
    [users.root]
    roles = ["Admin"]

A request naming no user (and no default) goes on anonymous, and routes that need a user answer
401. Without a users file every request is the local admin `dev` (or the user it names, as an
admin), so a newcomer's stack works as before.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aztrain.api.principal import HEADER, USER_HEADER, encode
from aztrain.domain.identity import ADMIN, DEFAULT_TEAM, SUBMITTER, team_role
from devhost.server import SignInRefused

#: Where `aztrain dev` finds its users file (else `<state dir>/users.toml`, else none).
USERS_ENV = "AZTRAIN_DEV_USERS"
LOCAL_ADMIN = "dev"
_PLATFORM_HEADERS = ("x-ms-client-principal", "x-ms-client-principal-id", "x-ms-client-principal-name")


class UnknownUser(SignInRefused):
    """The request names a user the users file does not know."""


@dataclass(frozen=True)
class LocalUsers:
    """Users and their app roles; `None` roles for `users` means "no file: everyone is an admin"."""

    users: Mapping[str, frozenset[str]] | None = None
    default: str = ""

    @classmethod
    def load(cls, path: Path) -> LocalUsers:
        """Read a users file; `ValueError` naming the file and the problem."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"users file {path}: {exc}") from None
        table = data.get("users", {})
        if not isinstance(table, dict) or not all(
            isinstance(u, dict) and isinstance(u.get("roles", []), list) for u in table.values()
        ):
            raise ValueError(f"users file {path}: expected [users.<name>] tables with roles = [...]")
        users = {name: frozenset(str(r) for r in spec.get("roles", [])) for name, spec in table.items()}
        default = str(data.get("default", ""))
        if default and default not in users:
            raise ValueError(f"users file {path}: default user {default!r} is not one of [users.*]")
        return cls(users=users, default=default)

    def signed_in(self, headers: Mapping[str, str]) -> dict[str, str]:
        """`headers` (lower-case names) as the platform passes them on: the named user's principal injected."""
        passed = {k: v for k, v in headers.items() if k not in _PLATFORM_HEADERS and k != USER_HEADER.lower()}
        user = headers.get(USER_HEADER.lower(), "").strip() or self.default
        if self.users is None:
            roles = frozenset({ADMIN, SUBMITTER, team_role(DEFAULT_TEAM)})
            return {**passed, HEADER.lower(): encode(user or LOCAL_ADMIN, roles)}
        if not user:  # anonymous, as App Service passes it on when unauthenticated requests are allowed
            return passed
        if user not in self.users:
            raise UnknownUser(f"unknown user {user!r}: the dev host's users are {', '.join(self.users) or 'none'}")
        return {**passed, HEADER.lower(): encode(user, self.users[user])}

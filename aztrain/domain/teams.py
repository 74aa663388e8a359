"""Teams: who shares the GPUs, and the bounds an admin sets on each (`aztrain teams ...`).

A bound left unset (None) does not bound. Priorities are whole numbers, higher first; a run's
is its manifest's `queue_priority`, else its team's default, and never above the team's maximum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aztrain.domain.errors import DOCUMENT, ManifestError
from aztrain.domain.identity import DEFAULT_TEAM

TEAM_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
MAX_PRIORITY = 100


def team_problem(name: str) -> str | None:
    """Why `name` cannot be a team's name, or None."""
    if re.fullmatch(TEAM_PATTERN, name):
        return None
    return f"team {name!r}: 3-32 lowercase letters, digits or '-', starting with a letter"


@dataclass(frozen=True)
class Team:
    """One team's quotas, budget and queue settings (`teams` table)."""

    name: str
    gpus: int | None = None  # GPUs its runs may hold at once
    gpu_hours: float | None = None  # GPU-hours per rolling 30 days
    monthly_budget: float | None = None  # money per calendar month (UTC), in the price table's currency
    default_priority: int = 0
    max_priority: int = 0
    weight: float = 1.0  # its share of contended capacity, relative to other teams'
    etag: str | None = None

    def priority_for(self, asked: int | None) -> int:
        """The priority a run asking for `asked` gets; `ValueError` naming the bound if it asks above it."""
        if asked is None:
            return min(self.default_priority, self.max_priority)
        if asked > self.max_priority:
            raise ValueError(f"queue_priority: {asked} is above team {self.name}'s maximum of {self.max_priority}")
        return asked


def _folder(source: str, prefix: str) -> str | None:
    """The folder a dropped manifest is in (`<prefix><folder>/<file>`), or None when it is directly under `prefix`."""
    folder, _, rest = source[len(prefix) :].partition("/") if source.startswith(prefix) else ("", "", "")
    return folder if rest else None


def dropped_team(source: str, prefix: str, asked: str | None) -> str:
    """The team of a manifest dropped at `source`: its folder's, the default team directly under `prefix`.

    `ManifestError` if the folder cannot be a team's name, or the manifest names another team (`asked`).
    """
    folder = _folder(source, prefix)
    if folder is not None and (problem := team_problem(folder)):
        raise ManifestError.at(DOCUMENT, f"folder {folder}/: {problem}")
    team = folder or DEFAULT_TEAM
    if asked and asked != team:
        says = f"the manifest says {asked} but was dropped into team {team}'s folder"
        raise ManifestError.at("team", f"{says}; drop it under {prefix}{asked}/")
    return team


def shown_team(source: str, prefix: str) -> str:
    """The team a rejected dropped manifest is shown under: its folder's if that can be a team's, else the default."""
    folder = _folder(source, prefix)
    return folder if folder is not None and team_problem(folder) is None else DEFAULT_TEAM

"""The API's bodies for teams and cost (`GET /api/cost`), beside `aztrain.api.models`."""

from __future__ import annotations

from pydantic import Field

from aztrain.api.models import _Body, _Query
from aztrain.domain.teams import TEAM_PATTERN

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class CostQuery(_Query):
    """Which month's spend, and optionally one team's only."""

    month: str | None = Field(default=None, pattern=MONTH_PATTERN, description="YYYY-MM (UTC); default this month")
    team: str | None = Field(default=None, pattern=TEAM_PATTERN, description="Only this team's runs")


class Spend(_Body):
    """Money and GPU-hours: `final` from finished runs, `live` from runs still holding nodes (this month only)."""

    team: str
    job: str | None = None
    day: str | None = Field(default=None, description="YYYY-MM-DD (UTC) the runs ended on (today while they run)")
    cost: float
    final: float
    live: float
    gpu_hours: float
    runs: int
    budget: float | None = Field(default=None, description="The team's monthly budget, when it has one")


class PriceSource(_Body):
    source: str
    fetched: str
    region: str


class CostReport(_Body):
    """A month's spend per team, per job and per day (docs/teams.md)."""

    month: str
    currency: str
    prices: PriceSource
    teams: list[Spend]
    jobs: list[Spend]
    days: list[Spend]

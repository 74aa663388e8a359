"""The API's bodies for teams and cost (`GET /api/cost`), beside `aztrain.api.models`."""

from __future__ import annotations

from pydantic import Field, model_validator

from aztrain.api.models import _Body, _Query
from aztrain.domain.teams import MAX_PRIORITY, TEAM_PATTERN

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


class TeamBounds(_Body):
    """A team's bounds, as an admin sets them (`PUT /api/teams/{team}` replaces them all); null: unbounded."""

    gpus: int | None = Field(default=None, ge=0, description="GPUs its runs may hold at once")
    gpu_hours: float | None = Field(default=None, ge=0, description="GPU-hours per rolling 30 days")
    monthly_budget: float | None = Field(default=None, ge=0, description="Money per calendar month (UTC)")
    default_priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    max_priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    weight: float = Field(default=1.0, gt=0, description="Its share of contended capacity against other teams'")

    @model_validator(mode="after")
    def _default_within_max(self) -> TeamBounds:
        if self.default_priority > self.max_priority:
            raise ValueError(f"default_priority {self.default_priority} is above max_priority {self.max_priority}")
        return self


class TeamView(TeamBounds):
    name: str


class TeamList(_Body):
    teams: list[TeamView]

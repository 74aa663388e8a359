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


class Placement(_Body):
    cluster: str = Field(description="The cluster it would run on; empty for serverless nodes")
    serverless: bool
    vm_size: str
    tier: str
    nodes: int
    gpus: int
    region: str
    node_hour: float = Field(description="The price table's price of one node-hour")


class DryRunView(_Body):
    """What `POST /api/jobs?dry_run=true` would do now; nothing is recorded."""

    dry_run: bool = True
    job: str
    team: str
    priority: int
    placement: Placement
    currency: str
    cost_bound: float = Field(description="nodes x node-hour price x compute.max_runtime: the most the run can cost")
    expected_cost: float | None = Field(description="The mean cost of the job's latest finished runs; null if none")
    admits_now: bool = Field(description="Whether it would be admitted at once (not wait in QUEUED)")
    refusals: list[str] = Field(description="Why it could never be admitted: a submit would be REJECTED (422)")
    waiting_reason: str | None = Field(description="Why it would wait in QUEUED, when it would")
    estimated_wait_seconds: float | None = Field(
        description="Until what holds it should have ended (each run by its max_runtime at the latest); null: unknown"
    )

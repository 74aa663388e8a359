"""What compute costs: the price table, a run's rate, and its cost from billed seconds.

The table (`prices.json`, beside this module) is data with its source and date, refreshed by a
maintainer with `scripts/fetch_prices.py` from the Azure Retail Prices API; nothing reads prices
over the network at run time. A run is billed from when its nodes are asked for (it enters
PROVISIONING) until it ends: nodes x those seconds x the price of one node-hour of its VM size and
tier in the control plane's region. The rate is fixed when the run is placed, so its live cost and
its final cost use one price.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from aztrain.domain.errors import ConfigError

PRICES = Path(__file__).with_name("prices.json")
TIERS = ("dedicated", "low_priority")


@dataclass(frozen=True)
class PriceTable:
    """Node-hour prices by (region, VM size, tier), with where they came from."""

    source: str
    fetched: str
    currency: str
    prices: dict[tuple[str, str, str], float]

    def node_hour(self, region: str, vm_size: str, tier: str) -> float:
        """The price of one node-hour; `ConfigError` naming what the table holds when it has no such price."""
        price = self.prices.get((region.lower(), vm_size.lower(), tier))
        if price is None:
            regions = sorted({r for r, _, _ in self.prices})
            raise ConfigError(
                f"no price for {vm_size} ({tier}) in {region}: the price table ({self.fetched}) holds regions "
                f"{', '.join(regions)}; set AZTRAIN_REGION to one, or refresh it (scripts/fetch_prices.py --region)",
                setting="AZTRAIN_REGION",
            )
        return price


@cache
def price_table(path: Path = PRICES) -> PriceTable:
    """The price table kept in the repo (read once)."""
    data = json.loads(path.read_text())
    prices = {
        (row["region"].lower(), row["vm_size"].lower(), tier): float(row[tier])
        for row in data["prices"]
        for tier in TIERS
    }
    return PriceTable(source=data["source"], fetched=data["fetched"], currency=data["currency"], prices=prices)


@dataclass(frozen=True)
class Rate:
    """What a run pays for while it holds nodes: fixed when it is placed."""

    vm_size: str
    tier: str
    region: str
    nodes: int
    gpus: int  # GPUs across its nodes: what a team's GPU quota counts
    node_hour: float  # the table's price of one node-hour
    currency: str = "USD"

    @property
    def per_hour(self) -> float:
        return self.nodes * self.node_hour

    def cost(self, billed_seconds: float) -> float:
        """Nodes x billed seconds x the node price."""
        return self.per_hour * billed_seconds / 3600

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rate:
        return cls(**d)


def billed_seconds(placed_at: datetime | None, ended_at: datetime | None, now: datetime) -> float:
    """Seconds a run has held (or asked for) its nodes: from placement to its end, or to `now` while it runs."""
    if placed_at is None:
        return 0.0
    return max(0.0, ((ended_at or now) - placed_at).total_seconds())


def money(amount: float) -> float:
    """An amount as shown and stored: to the cent's hundredth, so sums of many short runs stay exact enough."""
    return round(amount, 4)


@dataclass(frozen=True)
class CostEntry:
    """A finished run's final cost (`costs` table: one partition per month of its end, UTC)."""

    run_id: str
    job: str
    team: str
    submitted_by: str
    ended_at: datetime
    billed_seconds: float
    gpu_seconds: float
    cost: float
    vm_size: str
    tier: str

    @property
    def month(self) -> str:
        return month_of(self.ended_at)

    @property
    def day(self) -> str:
        return self.ended_at.date().isoformat()


def month_of(at: datetime) -> str:
    """`YYYY-MM`: the calendar month (UTC) budgets and the ledger are kept by."""
    return f"{at.year:04d}-{at.month:02d}"

"""Refresh `aztrain/domain/prices.json` from the Azure Retail Prices API (a maintainer runs this; the app never does).

    python scripts/fetch_prices.py [--region eastus --region westeurope] [--out aztrain/domain/prices.json]

The API is public and unauthenticated (learn.microsoft.com/rest/api/cost-management/retail-prices/
azure-retail-prices); each VM size is one filtered query, followed through `NextPageLink`. Linux
pay-as-you-go meters give `dedicated`; the `Low Priority` meter (Azure ML low-priority nodes), else the
`Spot` meter, gives `low_priority`. The sizes are those `aztrain.domain.profiles.GPUS_PER_NODE` knows.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aztrain.domain.profiles import GPUS_PER_NODE

API = "https://prices.azure.com/api/retail/prices"
TABLE = Path(__file__).resolve().parent.parent / "aztrain" / "domain" / "prices.json"


def meters(region: str, vm_size: str) -> list[dict[str, Any]]:
    """Every consumption meter of one VM size in one region (all pages)."""
    query = (
        f"serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{region}' and armSkuName eq '{vm_size}'"
    )
    url: str | None = f"{API}?{urllib.parse.urlencode({'$filter': query})}"
    items: list[dict[str, Any]] = []
    while url:
        with urllib.request.urlopen(url, timeout=30) as reply:
            page = json.load(reply)
        items.extend(page.get("Items", []))
        url = page.get("NextPageLink")
    return items


def row(region: str, vm_size: str, items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The table's row for a size: Linux meters only (Windows ones carry the licence)."""
    linux = [
        i for i in items if not i.get("productName", "").endswith("Windows") and i.get("unitOfMeasure") == "1 Hour"
    ]

    def price(suffix: str) -> float | None:
        found = [i["retailPrice"] for i in linux if i.get("meterName", "").endswith(suffix)]
        return min(found) if found else None

    regular = [i["retailPrice"] for i in linux if not i["meterName"].endswith(("Spot", "Low Priority"))]
    if not regular:
        return None
    low = price("Low Priority") or price("Spot")
    return {"region": region, "vm_size": vm_size, "dedicated": min(regular), "low_priority": low or min(regular)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", action="append", help="an Azure region (armRegionName); repeat for more")
    parser.add_argument("--out", type=Path, default=TABLE)
    args = parser.parse_args()
    rows = []
    for region in args.region or ["eastus"]:
        for vm_size in sorted(GPUS_PER_NODE):
            found = row(region, vm_size, meters(region, vm_size))
            if found is None:
                print(f"{region} {vm_size}: no Linux consumption meter; left out")
                continue
            rows.append(found)
    table = {
        "source": f"Azure Retail Prices API, {API} (serviceName 'Virtual Machines', type 'Consumption', Linux "
        "meters; 'Low Priority', else 'Spot', meters for low_priority), written by scripts/fetch_prices.py",
        "fetched": datetime.now(UTC).date().isoformat(),
        "note": "Retail (pay-as-you-go) prices, before any discount or reservation.",
        "currency": "USD",
        "unit": "1 Hour",
        "prices": rows,
    }
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {len(rows)} price(s) to {args.out}")


if __name__ == "__main__":
    main()

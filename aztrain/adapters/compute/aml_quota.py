"""Azure ML's vCPU quota per VM family, read from the region's usages (`MLClient.compute.list_usage`).

The Usages_List operation (GET `/subscriptions/<id>/providers/Microsoft.MachineLearningServices/
locations/<region>/usages`; its spec example `Usage/list.json`, kept in tests/fixtures/aml/) answers,
for the subscription, one line per VM family and tier — `Standard NCASv3_T4 Family Cluster Dedicated
vCPUs`, type `Microsoft.MachineLearningServices/vmFamily/usages` — with its `currentValue` and
`limit`, beside per-workspace and per-cluster lines, and the regional totals `Total Cluster
Dedicated Regional vCPUs` and `Total Cluster LowPriority Regional vCPUs`. Low-priority family lines
answer `limit: -1` (no limit of their own): low-priority vCPUs are bounded by the regional total.
Serverless jobs draw on the same quota as clusters (how-to-use-serverless-compute: "Serverless jobs
consume the same quota as Azure Machine Learning compute quota"), spot jobs on the low-priority one.

A run's nodes count against the tighter of their family's line and the regional total of their
tier. A family with no line at all has no quota: a run on it is refused at submit.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import AzureError

from aztrain.domain.records import ClusterSpec, Quota

log = logging.getLogger(__name__)

#: How long one reading of the usages serves: a reconciler pass asks once per waiting run's gate.
READ_SECONDS = 15.0
FAMILY_TYPE = "Microsoft.MachineLearningServices/vmFamily/usages"
REGIONAL = {"dedicated": "Total Cluster Dedicated Regional vCPUs", "low": "Total Cluster LowPriority Regional vCPUs"}
_TIER_WORDS = {"dedicated": "Dedicated", "low": "LowPriority"}


def usage_lines(usages: list[Any]) -> list[dict[str, Any]]:
    """The SDK's `Usage` objects as plain lines: `name`, `type`, `id`, `current`, `limit`.

    `Usage._from_rest_object` copies the REST model's dict into the entity as the wire names
    (`currentValue`, and `name` as an object), so both spellings are read.
    """
    lines = []
    for usage in usages:
        fields = vars(usage) if not isinstance(usage, dict) else usage
        name, limit = fields.get("name") or {}, fields.get("limit")
        lines.append(
            {
                "name": str(name.get("value", "") if isinstance(name, dict) else getattr(name, "value", "")),
                "type": str(fields.get("type") or ""),
                "id": str(fields.get("id") or ""),
                "current": int(fields.get("currentValue", fields.get("current_value")) or 0),
                "limit": -1 if limit is None else int(limit),
            }
        )
    return lines


def quota_of(lines: list[dict[str, Any]], spec: ClusterSpec) -> Quota | None:
    """The quota `spec`'s nodes count against: the less free of its family's line and its tier's regional total.

    None when the lines say nothing of any family (an empty or unreadable answer) or `spec` has no family.
    """
    families = [line for line in lines if line["type"] == FAMILY_TYPE and "/workspaces/" not in line["id"]]
    if not spec.vm_family or not families:
        return None
    tier = "low" if spec.priority == "low" else "dedicated"
    wanted = _key(spec.vm_family) + _key(f"Cluster {_TIER_WORDS[tier]} vCPUs")
    family = next((line for line in families if _key(line["name"]) == wanted), None)
    if family is None:
        return Quota(spec.vm_family, used=0, limit=0)
    candidates = [Quota(spec.vm_family, used=family["current"], limit=family["limit"])]
    regional = next((line for line in lines if line["name"] == REGIONAL[tier]), None)
    if regional is not None:
        candidates.append(Quota(REGIONAL[tier], used=regional["current"], limit=regional["limit"]))
    bounded = [q for q in candidates if q.limit >= 0]  # -1: no limit of its own
    return min(bounded, key=lambda q: q.limit - q.used) if bounded else None


def _key(name: str) -> str:
    """`Standard NCASv3_T4 Family Cluster Dedicated vCPUs` and `standardNCASv3_T4Family` + suffix compare equal."""
    return re.sub(r"[\s_-]", "", name).lower()


class Usages:
    """The region's usage lines, read at most every `READ_SECONDS`; a failed read checks no quota."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._lines: list[dict[str, Any]] = []
        self._read_at = float("-inf")

    def quota(self, spec: ClusterSpec) -> Quota | None:
        return quota_of(self._current(), spec)

    def _current(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._read_at >= READ_SECONDS:
                try:
                    self._lines = usage_lines(list(self._client().compute.list_usage()))
                except AzureError as exc:  # admission must not stall on a failed read: the next one may work
                    log.warning("azureml usages could not be read; no quota checked this time: %s", exc)
                    self._lines = []
                self._read_at = time.monotonic()
            return self._lines

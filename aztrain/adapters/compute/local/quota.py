"""The local backend's simulated quota: vCPUs per VM family, as `AZTRAIN_LOCAL_QUOTA` sets them.

`AZTRAIN_LOCAL_QUOTA` is a JSON object of quota family → vCPUs, e.g. `{"standardNCASv3_T4Family": 8}`
(the families of `aztrain.domain.sizes.SIZES`); a family it does not name has no quota here. What is
in use is what the backend holds now, as on Azure ML: every node of a simulated cluster (idle ones
too, until it scales to zero) and every node of a serverless job until the job ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aztrain.domain.errors import ConfigError
from aztrain.domain.records import ClusterSpec, Quota

SETTING = "AZTRAIN_LOCAL_QUOTA"


def parse_quota(raw: str) -> dict[str, int]:
    """Family → vCPUs from the setting's JSON; `ConfigError` naming what is wrong."""
    if not raw.strip():
        return {}
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{SETTING} is not valid JSON: {exc}", setting=SETTING) from None
    bad = not isinstance(document, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in document.values()
    )
    if bad:
        raise ConfigError(
            f"{SETTING} must be a JSON object of VM family → vCPUs (whole numbers, 0 or more), e.g. "
            f'{{"standardNCASv3_T4Family": 8}}; got {raw!r}',
            setting=SETTING,
        )
    return {str(k): int(v) for k, v in document.items()}


class SimulatedQuota:
    """Per-family limits, and the vCPUs the local backend's clusters and serverless jobs hold.

    A cluster holds the nodes `nodes` says it has now (a scale-down counts once it has settled).
    `serverless_dir` holds one marker per serverless job that holds nodes (its spec as JSON); a
    marker whose job has ended (`alive` says no) is removed as it is counted: its nodes are released.
    """

    def __init__(
        self,
        raw: str,
        clusters_dir: Path,
        serverless_dir: Path,
        *,
        nodes: Callable[[str], int],
        alive: Callable[[str], bool],
    ) -> None:
        self._limits = parse_quota(raw)
        self._clusters_dir = clusters_dir
        self._serverless_dir = serverless_dir
        self._nodes = nodes
        self._alive = alive
        serverless_dir.mkdir(parents=True, exist_ok=True)

    def of(self, spec: ClusterSpec) -> Quota | None:
        """The quota of `spec`'s family with what is held now; None where the setting names none."""
        limit = self._limits.get(spec.vm_family)
        if limit is None:
            return None
        return Quota(spec.vm_family, used=self._held(spec.vm_family), limit=limit)

    def hold(self, job_name: str, spec: ClusterSpec) -> None:
        """A serverless job's nodes are provisioned for it alone."""
        (self._serverless_dir / job_name).write_text(json.dumps(_quota_fields(spec)))

    def _held(self, family: str) -> int:
        held = 0
        for state_file in self._clusters_dir.glob("*.json"):
            state = _read(state_file)
            if state.get("vm_family") == family:  # nodes asked for count from the ask, as on Azure ML
                nodes = max(self._nodes(state_file.stem), int(state.get("target", 0)))
                held += nodes * int(state.get("vcpus", 0))
        for marker in self._serverless_dir.iterdir():
            if not self._alive(marker.name):
                marker.unlink(missing_ok=True)  # the job ended: its nodes went with it
                continue
            fields = _read(marker)
            if fields.get("vm_family") == family:
                held += int(fields.get("nodes", 0)) * int(fields.get("vcpus", 0))
        return held


def cluster_quota_fields(spec: ClusterSpec) -> dict[str, Any]:
    """What a simulated cluster's state records for the quota count: its nodes' family and vCPUs."""
    return {"vm_family": spec.vm_family, "vcpus": spec.vcpus_per_node}


def _quota_fields(spec: ClusterSpec) -> dict[str, Any]:
    return {**cluster_quota_fields(spec), "nodes": spec.nodes}


def _read(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}

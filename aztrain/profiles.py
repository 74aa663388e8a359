"""Compute profiles: the named clusters a manifest's `compute` section can run on (Azure ML backend).

One AmlCompute cluster per profile, named `aztrain-<profile>`. The defaults below can be
changed or extended with `AZTRAIN_COMPUTE_PROFILES`, a JSON object of profile name → fields;
fields left out of an existing profile keep their value, e.g.
`{"gpu-small": {"max_nodes": 8}, "a100-spot": {"vm_size": "Standard_NC24ads_A100_v4",
"max_nodes": 2, "tier": "low_priority", "delete_when_idle": true}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aztrain.errors import ConfigError, ManifestError
from aztrain.ports import ClusterSpec, cluster_spec

SETTING = "AZTRAIN_COMPUTE_PROFILES"
CLUSTER_PREFIX = "aztrain-"
#: A manifest's `compute.priority` → the profile tier that serves it.
TIER_FOR_PRIORITY = {"low": "low_priority", "dedicated": "dedicated"}
#: Azure ML compute names are 3-24 letters, digits and '-'; `aztrain-` leaves 16 for the profile.
_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$"


class ComputeProfile(BaseModel):
    """A cluster shape: VM size, node ceiling, tier, and how it scales down when idle."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    vm_size: str = Field(pattern=r"^Standard_[A-Za-z0-9_]+$")
    max_nodes: int = Field(ge=1, le=100)
    tier: Literal["low_priority", "dedicated"]
    idle_seconds_before_scale_down: int = Field(default=120, ge=0)
    #: Delete the cluster when its last run ends instead of leaving it at zero nodes.
    delete_when_idle: bool = False

    @property
    def cluster(self) -> str:
        """The AmlCompute cluster this profile runs on."""
        return CLUSTER_PREFIX + self.name


DEFAULT_PROFILES: tuple[ComputeProfile, ...] = (
    ComputeProfile(name="gpu-small", vm_size="Standard_NC6s_v3", max_nodes=4, tier="dedicated"),
    # The same GPUs, preemptible: what `priority: low` with the default profile runs on.
    ComputeProfile(name="gpu-small-low", vm_size="Standard_NC6s_v3", max_nodes=4, tier="low_priority"),
    ComputeProfile(name="gpu-a100", vm_size="Standard_NC24ads_A100_v4", max_nodes=2, tier="dedicated"),
    ComputeProfile(name="cpu-debug", vm_size="Standard_DS3_v2", max_nodes=2, tier="dedicated"),
)


def load_profiles(raw: str = "") -> dict[str, ComputeProfile]:
    """The default profiles with `raw` (the JSON of `AZTRAIN_COMPUTE_PROFILES`) applied over them.

    `ConfigError` names every bad profile and field, so a typo fails the app at startup, not a run.
    """
    profiles = {p.name: p for p in DEFAULT_PROFILES}
    if not raw.strip():
        return profiles
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{SETTING} is not valid JSON: {exc}", setting=SETTING) from None
    if not isinstance(document, dict):
        raise ConfigError(
            f"{SETTING} must be a JSON object of profile name → fields, got {type(document).__name__}",
            setting=SETTING,
        )
    problems: list[str] = []
    for name, fields in document.items():
        if not isinstance(fields, dict):
            problems.append(f"{name}: expected an object of fields, got {type(fields).__name__}")
            continue
        base = profiles[name].model_dump() if name in profiles else {}
        try:
            profiles[name] = ComputeProfile.model_validate({**base, **fields, "name": name})
        except ValidationError as exc:
            problems.extend(_describe(name, error) for error in exc.errors())
    if problems:
        raise ConfigError(f"{SETTING}: " + "; ".join(problems), setting=SETTING)
    return profiles


def _describe(profile: str, error: Any) -> str:
    field = ".".join(str(part) for part in error["loc"])
    if field == "name":
        return f"{profile}: a profile name is 2-16 lowercase letters, digits or '-', starting with a letter"
    if error["type"] == "missing":
        return f"{profile}.{field}: required for a new profile"
    if error["type"] == "extra_forbidden":
        known = ", ".join(name for name in ComputeProfile.model_fields if name != "name")
        return f"{profile}.{field}: unknown field; use {known}"
    message = error["msg"]
    return f"{profile}.{field}: {message[:1].lower()}{message[1:]} (got {error.get('input')!r})"


def select_profile(profiles: Mapping[str, ComputeProfile], compute: Mapping[str, Any]) -> ComputeProfile:
    """The profile a manifest's `compute` runs on.

    The named profile, unless the manifest asks for another VM size or priority: then the
    profile offering exactly that (a cluster has one VM size and one tier). `ManifestError` if none does.
    """
    named = profiles.get(compute["profile"])
    if named is None:
        known = ", ".join(sorted(profiles))
        raise ManifestError([f"compute.profile: {compute['profile']!r} is not a compute profile; use one of: {known}"])
    wanted = (compute.get("vm_size") or named.vm_size, TIER_FOR_PRIORITY[compute["priority"]])
    candidates = [named, *sorted(profiles.values(), key=lambda p: p.name)]
    match = next((p for p in candidates if (p.vm_size, p.tier) == wanted), None)
    if match is None:
        field = "compute.vm_size" if wanted[0] != named.vm_size else "compute.priority"
        offered = ", ".join(f"{p.name} ({p.vm_size}, {p.tier})" for p in profiles.values())
        raise ManifestError(
            [f"{field}: no compute profile runs {wanted[0]} on {wanted[1]} nodes; profiles: {offered} ({SETTING})"]
        )
    return match


def cluster_for(profiles: Mapping[str, ComputeProfile], compute: Mapping[str, Any]) -> ClusterSpec:
    """The cluster for a manifest's `compute`; `ManifestError` if no profile fits or it asks for too many nodes."""
    profile = select_profile(profiles, compute)
    if compute["nodes"] > profile.max_nodes:
        raise ManifestError(
            [
                f"compute.nodes: {compute['nodes']} is more than the {profile.max_nodes} node(s) "
                f"compute profile {profile.name} allows; ask for fewer or raise its max_nodes ({SETTING})"
            ]
        )
    return cluster_spec(
        {**compute, "vm_size": profile.vm_size},
        name=profile.cluster,
        default_vm_size=profile.vm_size,
        max_nodes=profile.max_nodes,
    )

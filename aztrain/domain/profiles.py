"""Compute profiles: where a manifest's `compute` section runs (Azure ML backend), and on what.

A profile's `placement` is `cluster` (one AmlCompute cluster per profile, named `aztrain-<profile>`,
which scales to zero after its idle time) or `serverless` (Azure ML serverless compute: nodes for
the job alone, released when it ends; no cluster is created, scaled or deleted, and
`compute.priority` picks the job tier, `low` → spot, `dedicated` → standard). The defaults below
can be changed or extended with `AZTRAIN_COMPUTE_PROFILES`, a JSON object of profile name →
fields; fields left out of an existing profile keep their value, e.g.
`{"gpu-small": {"max_nodes": 8}, "a100-spot": {"vm_size": "Standard_NC24ads_A100_v4",
"max_nodes": 2, "tier": "low_priority", "delete_when_idle": true}}`.

A profile knows its GPUs per node (from `SIZES` for the sizes below, given for any other),
because the trainer pins each process to its own GPU: a manifest asking for more processes per
node than that is rejected before anything is paid for, on either placement. It knows the vCPUs
and the quota family of its nodes too (from `SIZES`), which the quota check before provisioning
counts. VM sizes Azure has retired are rejected naming a replacement, in a profile and in a
manifest's `compute.vm_size`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from aztrain.domain.errors import ConfigError, FieldProblem, ManifestError
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.records import ClusterSpec, cluster_spec
from aztrain.domain.sizes import GPUS_PER_NODE, SIZES, retirement_notice

SETTING = "AZTRAIN_COMPUTE_PROFILES"
ALLOWED_SETTING = "AZTRAIN_ALLOWED_PROFILES"
CLUSTER_PREFIX = "aztrain-"
#: A manifest's `compute.priority` → the cluster profile tier that serves it.
TIER_FOR_PRIORITY = {"low": "low_priority", "dedicated": "dedicated"}
#: A manifest's `compute.priority` → the serverless job tier (`queue_settings.job_tier`; Azure ML's
#: how-to-use-serverless-compute: "standard (dedicated) tier or spot (low-priority) VM").
JOB_TIER_FOR_PRIORITY = {"low": "spot", "dedicated": "standard"}
#: Profile names: lowercase, and short enough that `aztrain-<name>` fits a compute name's 24 characters.
_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$"
#: Azure ML compute names, as the REST spec's `computeName` path parameter has them (Compute_CreateOrUpdate,
#: 2023-08-01-preview): 3-24 letters, digits or '-', starting with a letter, not ending in '-' and digits.
#: The service's message says it as "Numbers cannot be the ending of the name if the previous character
#: is a minus symbol": with a name ending in a letter or digit, every '-' is followed later by a letter.
COMPUTE_NAME_PATTERN = r"^[a-zA-Z](?![a-zA-Z0-9-]*-\d+$)[a-zA-Z0-9\-]{2,23}$"


class ComputeProfile(BaseModel):
    """A node shape and where it runs: VM size and its GPUs, node ceiling, placement, tier, and idle scale-down.

    `tier`, `idle_seconds_before_scale_down` and `delete_when_idle` are a cluster's; a serverless
    job's tier follows the manifest's `compute.priority`, and it has no idle time.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(pattern=_NAME_PATTERN)
    vm_size: str = Field(pattern=r"^Standard_[A-Za-z0-9_]+$")
    #: 0 for a CPU-only size: its processes are not bound to GPUs.
    gpus_per_node: int = Field(ge=0, le=16)
    max_nodes: int = Field(ge=1, le=100)
    tier: Literal["low_priority", "dedicated"] = "dedicated"
    placement: Literal["cluster", "serverless"] = "cluster"
    #: vCPUs per node and their quota family: 0 and '' for a size aztrain does not know (no quota check).
    vcpus_per_node: int = Field(default=0, ge=0)
    vm_family: str = ""
    idle_seconds_before_scale_down: int = Field(default=120, ge=0)
    #: Delete the cluster when its last run ends instead of leaving it at zero nodes.
    delete_when_idle: bool = False

    @model_validator(mode="before")
    @classmethod
    def _known_size(cls, data: Any) -> Any:
        """Sizes in `SIZES` need no `gpus_per_node`, `vcpus_per_node` or `vm_family`; others must give their GPUs."""
        facts = SIZES.get(data.get("vm_size", "")) if isinstance(data, dict) else None
        if facts is None:
            return data
        known = {"gpus_per_node": facts.gpus, "vcpus_per_node": facts.vcpus, "vm_family": facts.family}
        return {**known, **data}

    @field_validator("name")
    @classmethod
    def _valid_cluster_name(cls, value: str) -> str:
        if not re.fullmatch(COMPUTE_NAME_PATTERN, CLUSTER_PREFIX + value):
            raise ValueError("invalid cluster name")  # described by `_describe`, which knows the profile
        return value

    @field_validator("vm_size")
    @classmethod
    def _current(cls, value: str) -> str:
        notice = retirement_notice(value)
        if notice:
            raise ValueError(notice)
        return value

    @field_validator("gpus_per_node")
    @classmethod
    def _as_azure_says(cls, value: int, info: ValidationInfo) -> int:
        known = GPUS_PER_NODE.get(info.data.get("vm_size", ""))
        if known is not None and value != known:
            raise ValueError(f"{info.data['vm_size']} has {known} GPU(s) per node, not {value}")
        return value

    @property
    def cluster(self) -> str:
        """The AmlCompute cluster this profile runs on (a serverless profile has none)."""
        return CLUSTER_PREFIX + self.name

    @property
    def serverless(self) -> bool:
        return self.placement == "serverless"


DEFAULT_PROFILES: tuple[ComputeProfile, ...] = (
    ComputeProfile(name="gpu-small", vm_size="Standard_NC4as_T4_v3", gpus_per_node=1, max_nodes=4, tier="dedicated"),
    # The same GPUs, preemptible: what `priority: low` with the default profile runs on.
    ComputeProfile(
        name="gpu-small-low", vm_size="Standard_NC4as_T4_v3", gpus_per_node=1, max_nodes=4, tier="low_priority"
    ),
    ComputeProfile(name="gpu-a100", vm_size="Standard_NC24ads_A100_v4", gpus_per_node=1, max_nodes=2, tier="dedicated"),
    ComputeProfile(name="gpu-h100", vm_size="Standard_NC40ads_H100_v5", gpus_per_node=1, max_nodes=2, tier="dedicated"),
    ComputeProfile(name="cpu-debug", vm_size="Standard_DS3_v2", gpus_per_node=0, max_nodes=2, tier="dedicated"),
    # Serverless: nodes for each job alone, spot or standard as its `compute.priority` says; no idle tail.
    ComputeProfile(
        name="serverless-t4", vm_size="Standard_NC4as_T4_v3", gpus_per_node=1, max_nodes=4, placement="serverless"
    ),
    ComputeProfile(
        name="serverless-a100", vm_size="Standard_NC24ads_A100_v4", gpus_per_node=1, max_nodes=2, placement="serverless"
    ),
)


def load_profiles(raw: str = "", allowed: Collection[str] = ()) -> dict[str, ComputeProfile]:
    """The default profiles with `raw` (the JSON of `AZTRAIN_COMPUTE_PROFILES`) applied over them.

    `allowed` (`AZTRAIN_ALLOWED_PROFILES`) keeps only the profiles a deployment offers its users, so a
    manifest cannot start a cluster the deployment did not mean to pay for; empty keeps every profile.
    `ConfigError` names every bad profile and field, so a typo fails the app at startup, not a run.
    """
    profiles = _with_overrides({p.name: p for p in DEFAULT_PROFILES}, raw)
    if not allowed:
        return profiles
    unknown = sorted(set(allowed) - profiles.keys())
    if unknown:
        raise ConfigError(
            f"{ALLOWED_SETTING} names no profile {', '.join(unknown)}; profiles: {', '.join(sorted(profiles))}",
            setting=ALLOWED_SETTING,
        )
    return {name: profile for name, profile in profiles.items() if name in allowed}


def _with_overrides(profiles: dict[str, ComputeProfile], raw: str) -> dict[str, ComputeProfile]:
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
        if "vm_size" in fields:  # another size has its own GPUs and vCPUs: the old profile's do not carry over
            for known in ("gpus_per_node", "vcpus_per_node", "vm_family"):
                base.pop(known, None)
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
        return (
            f"{profile}: a profile name is 2-16 lowercase letters, digits or '-', starting with a letter, with a "
            f"letter somewhere after every '-', so that {CLUSTER_PREFIX}{profile} is a valid Azure ML compute name"
        )
    if field == "gpus_per_node" and error["type"] == "missing":
        return (
            f"{profile}.gpus_per_node: required for a VM size aztrain does not know; give the size's GPUs per "
            f"node from Azure's size page (0 for a CPU-only size)"
        )
    if error["type"] == "missing":
        return f"{profile}.{field}: required for a new profile"
    if error["type"] == "extra_forbidden":
        known = ", ".join(name for name in ComputeProfile.model_fields if name != "name")
        return f"{profile}.{field}: unknown field; use {known}"
    if error["type"] == "value_error":  # our own validators' messages, without pydantic's "Value error, "
        return f"{profile}.{field}: {error['ctx']['error']}"
    message = error["msg"]
    return f"{profile}.{field}: {message[:1].lower()}{message[1:]} (got {error.get('input')!r})"


def select_profile(profiles: Mapping[str, ComputeProfile], compute: ComputeSpec) -> ComputeProfile:
    """The profile a manifest's `compute` runs on.

    The named profile, unless the manifest asks for another VM size or (on a cluster) priority:
    then the profile of the same placement offering exactly that (a cluster has one VM size and one
    tier; a serverless job takes its tier from the priority). `ManifestError` if none does, or if the
    manifest names a VM size Azure has retired.
    """
    if compute.vm_size and (notice := retirement_notice(compute.vm_size)):
        raise ManifestError.at("compute.vm_size", notice)
    named = profiles.get(compute.profile)
    if named is None:
        known = ", ".join(sorted(profiles))
        problem = f"{compute.profile!r} is not a compute profile this deployment offers"
        raise ManifestError.at("compute.profile", f"{problem}; use one of: {known}")
    tier = named.tier if named.serverless else TIER_FOR_PRIORITY[compute.priority]
    wanted = (compute.vm_size or named.vm_size, tier)
    same_placement = [p for p in sorted(profiles.values(), key=lambda p: p.name) if p.placement == named.placement]
    match = next((p for p in [named, *same_placement] if (p.vm_size, p.tier) == wanted), None)
    if match is None:
        field = "compute.vm_size" if wanted[0] != named.vm_size else "compute.priority"
        offered = ", ".join(f"{p.name} ({p.vm_size}, {p.tier})" for p in same_placement)
        nodes = f"{named.placement} nodes" if named.serverless else f"{wanted[1]} nodes"
        raise ManifestError.at(
            field, f"no compute profile runs {wanted[0]} on {nodes}; profiles: {offered} ({SETTING})"
        )
    return match


def cluster_for(profiles: Mapping[str, ComputeProfile], compute: ComputeSpec) -> ClusterSpec:
    """The nodes for a manifest's `compute`: its profile's cluster, or serverless nodes named after the profile.

    `ManifestError` naming every problem: no profile fits, more nodes than the profile allows, or
    more training processes per node than its nodes have GPUs (each process needs its own).
    """
    profile = select_profile(profiles, compute)
    problems = []
    if compute.nodes > profile.max_nodes:
        problems.append(
            FieldProblem(
                "compute.nodes",
                f"{compute.nodes} is more than the {profile.max_nodes} node(s) compute profile {profile.name} "
                f"allows; ask for fewer or raise its max_nodes ({SETTING})",
            )
        )
    gpus = gpu_problem(profile, compute)
    if gpus:
        problems.append(gpus)
    if problems:
        raise ManifestError(problems)
    return cluster_spec(
        compute,
        name=profile.name if profile.serverless else profile.cluster,
        vm_size=profile.vm_size,
        max_nodes=profile.max_nodes,
        placement=profile.placement,
        vm_family=profile.vm_family,
        vcpus_per_node=profile.vcpus_per_node,
    )


def gpu_problem(profile: ComputeProfile, compute: ComputeSpec) -> FieldProblem | None:
    """Why `compute` asks for more training processes per node than the profile's nodes have GPUs, or None."""
    if not profile.gpus_per_node or compute.processes_per_node <= profile.gpus_per_node:
        return None
    return FieldProblem(
        "compute.processes_per_node",
        f"{compute.processes_per_node} is more than the {profile.gpus_per_node} "
        f"GPU(s) per node of compute profile {profile.name} ({profile.vm_size}), and each training process "
        f"needs its own GPU; ask for at most {profile.gpus_per_node} per node and more nodes, or a profile "
        f"with more GPUs per node",
    )

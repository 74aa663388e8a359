"""How each backend decides a manifest's `compute`: the same functions for the backends and offline `validate`.

The Azure ML backend decides by its profiles (`profiles.cluster_for`); the local backend simulates
clusters of a fixed size named after the profile (`local_cluster_for`). `compute_rules` picks the one a
deployment's settings name, so `aztrain validate` answers what the app would.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping

from aztrain.domain.errors import FieldProblem, ManifestError
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.profiles import (
    ALLOWED_SETTING,
    SETTING,
    ComputeProfile,
    cluster_for,
    gpu_problem,
    load_profiles,
    select_profile,
)
from aztrain.domain.records import ClusterSpec, cluster_spec

#: How many nodes each of the local backend's simulated clusters has.
LOCAL_NODES_SETTING = "AZTRAIN_LOCAL_CLUSTER_NODES"


def local_cluster_for(
    profiles: Mapping[str, ComputeProfile], compute: ComputeSpec, *, cluster_nodes: int, offered_only: bool = False
) -> ClusterSpec:
    """The local backend's nodes: a simulated cluster of `cluster_nodes` named after the profile, or serverless nodes.

    A known profile's GPUs per node bound the processes, and its size's vCPUs and family are what the
    simulated quota counts; serverless nodes are bounded by the profile's `max_nodes`. `offered_only`
    (a deployment's `AZTRAIN_ALLOWED_PROFILES`): the profile is decided as the Azure ML backend does.
    Every problem at once.
    """
    profile = profiles.get(compute.profile)
    serverless = profile is not None and profile.serverless
    name = f"local-{compute.profile}"
    max_nodes = profile.max_nodes if profile and serverless else cluster_nodes
    gpus = gpu_problem(profile, compute) if profile else None
    problems = [gpus] if gpus else []
    if offered_only:
        try:
            select_profile(profiles, compute)
        except ManifestError as exc:
            problems += exc.problems
    if compute.nodes > max_nodes:
        clusters = "" if serverless else f" (the local backend's clusters: {LOCAL_NODES_SETTING}={cluster_nodes})"
        problems.append(
            FieldProblem(
                "compute.nodes", f"{compute.nodes} is more than the {max_nodes} node(s) {name} allows{clusters}"
            )
        )
    if problems:
        raise ManifestError(problems)
    return cluster_spec(
        compute,
        name=name,
        vm_size=compute.vm_size or "Local_CPU",
        max_nodes=max_nodes,
        placement=profile.placement if profile else "cluster",
        vm_family=profile.vm_family if profile else "",
        vcpus_per_node=profile.vcpus_per_node if profile else 0,
    )


def compute_rules(
    backend: str, *, profiles_setting: str = "", allowed: Collection[str] = (), local_cluster_nodes: int = 2
) -> tuple[Callable[[ComputeSpec], ClusterSpec], str]:
    """How the `backend` of these settings decides a manifest's `compute`, and those rules in words.

    The backends and the CLI's offline `validate` decide through the same functions, so they agree.
    """
    profiles = load_profiles(profiles_setting, allowed)
    which = "the built-in profiles" if not profiles_setting else f"the profiles of {SETTING}"
    if allowed:
        which += f", only {', '.join(allowed)} ({ALLOWED_SETTING})"
    if backend == "local":
        rules = f"the local backend ({which}; clusters of {local_cluster_nodes} node(s), {LOCAL_NODES_SETTING})"
        decide = functools.partial(
            local_cluster_for, profiles, cluster_nodes=local_cluster_nodes, offered_only=bool(allowed)
        )
        return decide, rules
    return functools.partial(cluster_for, profiles), f"the {backend} backend ({which})"

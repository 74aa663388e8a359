"""The simulated cluster's shape rules, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from aztrain.adapters.compute.local.backend import LocalBackend
from aztrain.domain.errors import ManifestError
from aztrain.domain.manifest import ComputeSpec
from aztrain.service.settings import Settings


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(Settings(local_state_dir=tmp_path, local_cluster_nodes=2))


def test_a_known_profiles_gpus_per_node_bound_the_processes_per_node(backend: LocalBackend) -> None:
    with pytest.raises(ManifestError, match=r"processes_per_node: 2 is more than the 1 GPU\(s\) per node"):
        backend.cluster_for(ComputeSpec(profile="gpu-small", nodes=1, processes_per_node=2))
    spec = backend.cluster_for(ComputeSpec(profile="gpu-small", nodes=2, processes_per_node=1))
    assert (spec.name, spec.nodes, spec.processes_per_node) == ("local-gpu-small", 2, 1)


def test_a_profile_only_this_machine_knows_is_a_cluster_of_its_own(backend: LocalBackend) -> None:
    spec = backend.cluster_for(ComputeSpec(profile="e2e", nodes=1, processes_per_node=2))
    assert (spec.name, spec.processes_per_node) == ("local-e2e", 2)


def test_more_nodes_than_the_simulated_cluster_has_are_refused(backend: LocalBackend) -> None:
    with pytest.raises(ManifestError, match=r"compute\.nodes: 3 is more than the 2 node"):
        backend.cluster_for(ComputeSpec(profile="e2e", nodes=3))


def test_a_deployment_that_allows_some_profiles_refuses_the_others_naming_them(tmp_path: Path) -> None:
    settings = Settings(local_state_dir=tmp_path, allowed_profiles=("gpu-small",))
    backend = LocalBackend(settings)
    assert backend.cluster_for(ComputeSpec(profile="gpu-small", nodes=1)).nodes == 1
    with pytest.raises(
        ManifestError, match="'gpu-a100' is not a compute profile this deployment offers; use one of: gpu-small"
    ):
        backend.cluster_for(ComputeSpec(profile="gpu-a100", nodes=1))

"""The local backend's serverless placement and simulated quota, without starting any job."""

from __future__ import annotations

from pathlib import Path

import pytest

from aztrain.adapters.compute.local.backend import LocalBackend
from aztrain.domain.errors import ConfigError, ManifestError
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.records import Quota
from aztrain.service.settings import Settings

T4 = "standardNCASv3_T4Family"


def local(tmp_path: Path, quota: str = '{"standardNCASv3_T4Family": 8}') -> LocalBackend:
    return LocalBackend(
        Settings(local_state_dir=tmp_path, local_cluster_nodes=2, local_provision_seconds=0, local_quota=quota)
    )


def test_a_serverless_profile_has_no_simulated_cluster_and_its_own_node_ceiling(tmp_path: Path) -> None:
    backend = local(tmp_path)
    spec = backend.cluster_for(ComputeSpec(profile="serverless-t4", nodes=4))  # beyond the 2 of a simulated cluster
    assert spec.serverless and (spec.vm_family, spec.vcpus_per_node) == (T4, 4)
    assert backend.ensure_cluster(spec) == 4 and not list((tmp_path / "clusters").glob("*.json"))
    with pytest.raises(ManifestError, match=r"compute\.nodes: 5 is more than the 4 node"):
        backend.cluster_for(ComputeSpec(profile="serverless-t4", nodes=5))


def test_a_clusters_nodes_count_against_their_familys_quota_until_it_scales_to_zero(tmp_path: Path) -> None:
    backend = local(tmp_path)
    spec = backend.cluster_for(ComputeSpec(profile="gpu-small", nodes=2))
    assert backend.quota(spec) == Quota(T4, used=0, limit=8)
    backend.ensure_cluster(spec)
    assert backend.quota(spec) == Quota(T4, used=8, limit=8)
    backend.scale_to_zero(spec.name)
    backend.cluster_nodes(spec.name)  # the scale-down settles
    assert backend.quota(spec) == Quota(T4, used=0, limit=8)


def test_a_family_the_setting_does_not_name_has_no_quota(tmp_path: Path) -> None:
    backend = local(tmp_path)
    assert backend.quota(backend.cluster_for(ComputeSpec(profile="gpu-a100"))) is None
    assert backend.quota(backend.cluster_for(ComputeSpec(profile="e2e"))) is None  # a profile only this machine knows


@pytest.mark.parametrize("raw", ["{", "[8]", '{"standardNCASv3_T4Family": -1}', '{"standardNCASv3_T4Family": "8"}'])
def test_a_bad_quota_setting_fails_at_startup_naming_it(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="AZTRAIN_LOCAL_QUOTA") as caught:
        local(tmp_path, raw)
    assert caught.value.setting == "AZTRAIN_LOCAL_QUOTA"

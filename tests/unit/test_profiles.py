"""Compute profiles: defaults, JSON overrides with errors that name the profile and field, and selection."""

from __future__ import annotations

import json

import pytest

from aztrain.domain.errors import ConfigError, ManifestError
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.profiles import (
    DEFAULT_PROFILES,
    GPUS_PER_NODE,
    SETTING,
    cluster_for,
    load_profiles,
    retirement_notice,
    select_profile,
)
from aztrain.service.settings import Settings


def compute(**fields: object) -> ComputeSpec:
    """A manifest's `compute` section, defaults filled in as the manifest model fills them."""
    return ComputeSpec.model_validate(fields)


def problems(raw: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_profiles(raw if isinstance(raw, str) else json.dumps(raw))
    assert caught.value.setting == SETTING
    return str(caught.value)


def test_default_profiles():
    profiles = load_profiles()
    assert {name: (p.vm_size, p.gpus_per_node, p.placement) for name, p in profiles.items()} == {
        "gpu-small": ("Standard_NC4as_T4_v3", 1, "cluster"),
        "gpu-small-low": ("Standard_NC4as_T4_v3", 1, "cluster"),
        "gpu-a100": ("Standard_NC24ads_A100_v4", 1, "cluster"),
        "gpu-h100": ("Standard_NC40ads_H100_v5", 1, "cluster"),
        "cpu-debug": ("Standard_DS3_v2", 0, "cluster"),
        "serverless-t4": ("Standard_NC4as_T4_v3", 1, "serverless"),
        "serverless-a100": ("Standard_NC24ads_A100_v4", 1, "serverless"),
    }
    assert profiles["gpu-small-low"].tier == "low_priority"
    assert (profiles["gpu-small"].vcpus_per_node, profiles["gpu-small"].vm_family) == (4, "standardNCASv3_T4Family")
    for profile in DEFAULT_PROFILES:
        assert profile.cluster == f"aztrain-{profile.name}"
        assert 3 <= len(profile.cluster) <= 24  # Azure ML's limit on compute names
        assert profile.idle_seconds_before_scale_down == 120 and not profile.delete_when_idle


def test_override_changes_only_the_fields_given_and_adds_new_profiles():
    profiles = load_profiles(
        json.dumps(
            {
                "gpu-small": {"max_nodes": 8, "idle_seconds_before_scale_down": 60},
                "a100-spot": {
                    "vm_size": "Standard_NC24ads_A100_v4",
                    "max_nodes": 2,
                    "tier": "low_priority",
                    "delete_when_idle": True,
                },
            }
        )
    )
    small = profiles["gpu-small"]
    assert (small.vm_size, small.tier, small.max_nodes, small.idle_seconds_before_scale_down) == (
        "Standard_NC4as_T4_v3",
        "dedicated",
        8,
        60,
    )
    spot = profiles["a100-spot"]
    assert spot.delete_when_idle and spot.idle_seconds_before_scale_down == 120 and spot.cluster == "aztrain-a100-spot"
    assert set(profiles) == {p.name for p in DEFAULT_PROFILES} | {"a100-spot"}


def test_blank_setting_means_the_defaults():
    assert load_profiles("  ") == load_profiles()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "AZTRAIN_COMPUTE_PROFILES is not valid JSON"),
        ([1, 2], "must be a JSON object of profile name → fields, got list"),
        ({"gpu-small": 4}, "gpu-small: expected an object of fields, got int"),
        ({"gpu-small": {"max_nodes": "8"}}, "gpu-small.max_nodes: input should be a valid integer (got '8')"),
        ({"gpu-small": {"max_nodes": 0}}, "gpu-small.max_nodes: input should be greater than or equal to 1"),
        ({"gpu-small": {"tier": "spot"}}, "gpu-small.tier: input should be 'low_priority' or 'dedicated'"),
        ({"gpu-small": {"vm_size": "NC6"}}, "gpu-small.vm_size: string should match pattern"),
        (
            {"gpu-small": {"maxnodes": 8}},
            "gpu-small.maxnodes: unknown field; use vm_size, gpus_per_node, max_nodes, tier",
        ),
        ({"new-one": {"vm_size": "Standard_DS3_v2"}}, "new-one.max_nodes: required for a new profile"),
        ({"Bad_Name": {"vm_size": "Standard_DS3_v2", "max_nodes": 1, "tier": "dedicated"}}, "Bad_Name: a profile name"),
        ({"a-very-long-profile-name": {}}, "a-very-long-profile-name: a profile name is 2-16 lowercase letters"),
    ],
)
def test_bad_profiles_are_rejected_naming_the_profile_and_field(raw, expected):
    assert expected in problems(raw)


def test_every_problem_is_reported_at_once():
    message = problems({"gpu-small": {"max_nodes": -1}, "cpu-debug": {"tier": "cheap"}})
    assert "gpu-small.max_nodes" in message and "cpu-debug.tier" in message


def test_settings_read_the_azure_ml_variables():
    settings = Settings.from_env(
        {
            "AZTRAIN_BACKEND": "azureml",
            "AZTRAIN_AML_SUBSCRIPTION_ID": "sub",
            "AZTRAIN_AML_RESOURCE_GROUP": "rg",
            "AZTRAIN_AML_WORKSPACE": "ws",
            "AZTRAIN_AML_ENVIRONMENT": "aztrain-trainer:7",
            "AZTRAIN_AML_COMPUTE_IDENTITY_ID": "/subscriptions/s/resourceGroups/rg/providers/x/id-train",
            "AZTRAIN_COMPUTE_PROFILES": '{"gpu-small": {"max_nodes": 2}}',
            "AZTRAIN_MAX_PREEMPTION_ATTEMPTS": "5",
        }
    )
    assert (settings.backend, settings.aml_subscription_id, settings.aml_resource_group, settings.aml_workspace) == (
        "azureml",
        "sub",
        "rg",
        "ws",
    )
    assert settings.aml_environment == "aztrain-trainer:7" and settings.max_preemption_attempts == 5
    assert settings.aml_compute_identity_id.endswith("/id-train")
    assert load_profiles(settings.compute_profiles)["gpu-small"].max_nodes == 2
    assert Settings.from_env({}).aml_environment == "aztrain-trainer@latest"


def test_a_manifest_runs_on_its_named_profile():
    assert select_profile(load_profiles(), compute(profile="gpu-a100")).name == "gpu-a100"


def test_low_priority_runs_on_the_profile_with_the_same_vm_size_and_that_tier():
    assert select_profile(load_profiles(), compute(priority="low")).name == "gpu-small-low"


def test_a_vm_size_maps_to_the_profile_offering_it():
    chosen = select_profile(load_profiles(), compute(vm_size="Standard_NC24ads_A100_v4"))
    assert chosen.name == "gpu-a100"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"profile": "gpu-huge"},
            "compute.profile: 'gpu-huge' is not a compute profile this deployment offers; use one of: cpu-debug,",
        ),
        (
            {"vm_size": "Standard_ND96asr_v4"},
            "compute.vm_size: no compute profile runs Standard_ND96asr_v4 on dedicated",
        ),
        (
            {"profile": "gpu-a100", "priority": "low"},
            "compute.priority: no compute profile runs Standard_NC24ads_A100_v4",
        ),
    ],
)
def test_a_manifest_no_profile_fits_is_rejected_naming_the_field(fields, expected):
    with pytest.raises(ManifestError) as caught:
        select_profile(load_profiles(), compute(**fields))
    assert expected in str(caught.value)


def test_nodes_beyond_the_profile_maximum_are_rejected_naming_the_field_and_the_maximum():
    with pytest.raises(ManifestError) as caught:
        cluster_for(load_profiles(), compute(profile="gpu-a100", nodes=3))
    (problem,) = map(str, caught.value.problems)
    assert problem.startswith("compute.nodes: 3 is more than the 2 node(s) compute profile gpu-a100 allows")


def test_the_cluster_spec_of_a_multi_node_manifest():
    spec = cluster_for(load_profiles(), compute(nodes=4, processes_per_node=1, priority="low"))
    assert (spec.name, spec.nodes, spec.processes_per_node, spec.vm_size, spec.priority) == (
        "aztrain-gpu-small-low",
        4,
        1,
        "Standard_NC4as_T4_v3",
        "low",
    )


# ----------------------------------------------------------------- retired VM sizes (issue 12, item 1)
@pytest.mark.parametrize(
    ("vm_size", "series", "retired_on"),
    [
        ("Standard_NC6s_v3", "NCv3", "30 Sep 2025"),
        ("Standard_NC24rs_v3", "NCv3", "30 Sep 2025"),
        ("Standard_NC12s_v2", "NCv2", "06 Sep 2023"),
        ("Standard_NC6", "NC", "06 Sep 2023"),
        ("Standard_ND24s", "ND", "06 Sep 2023"),
        ("Standard_NV12_Promo", "NV", "06 Sep 2023"),
    ],
)
def test_a_retired_vm_size_in_a_profile_fails_at_startup_naming_a_replacement(vm_size, series, retired_on):
    message = problems({"old": {"vm_size": vm_size, "gpus_per_node": 1, "max_nodes": 1, "tier": "dedicated"}})
    assert f"old.vm_size: {vm_size} ({series} series) was retired by Azure on {retired_on}; use Standard_" in message


def test_current_sizes_with_similar_names_are_not_retired():
    for vm_size in ("Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"):
        assert retirement_notice(vm_size) == ""


def test_a_retired_vm_size_in_a_manifest_is_rejected_naming_the_field_and_a_replacement():
    with pytest.raises(ManifestError) as caught:
        cluster_for(load_profiles(), compute(vm_size="Standard_NC6s_v3"))
    (problem,) = map(str, caught.value.problems)
    assert problem.startswith("compute.vm_size: Standard_NC6s_v3 (NCv3 series) was retired by Azure on 30 Sep 2025")
    assert "use Standard_NC4as_T4_v3" in problem


# ------------------------------------------------------------------- GPUs per node (issue 12, item 2)
def test_known_sizes_bring_their_gpus_and_a_changed_size_brings_its_own():
    profiles = load_profiles(json.dumps({"gpu-small": {"vm_size": "Standard_NC64as_T4_v3"}}))
    assert profiles["gpu-small"].gpus_per_node == 4
    assert GPUS_PER_NODE["Standard_NC48ads_A100_v4"] == 2


def test_a_custom_size_must_say_how_many_gpus_it_has():
    custom = {"vm_size": "Standard_NC8ads_Future_v9", "max_nodes": 2, "tier": "dedicated"}
    assert "new.gpus_per_node: required for a VM size aztrain does not know" in problems({"new": custom})
    profiles = load_profiles(json.dumps({"new": {**custom, "gpus_per_node": 2}}))
    assert profiles["new"].gpus_per_node == 2


def test_a_known_size_cannot_claim_other_gpus():
    message = problems({"gpu-a100": {"gpus_per_node": 4}})
    assert "gpu-a100.gpus_per_node: Standard_NC24ads_A100_v4 has 1 GPU(s) per node, not 4" in message


def test_more_processes_per_node_than_gpus_is_rejected_naming_the_field_and_both_numbers():
    with pytest.raises(ManifestError) as caught:
        cluster_for(load_profiles(), compute(profile="gpu-small", nodes=1, processes_per_node=2))
    (problem,) = map(str, caught.value.problems)
    assert problem.startswith(
        "compute.processes_per_node: 2 is more than the 1 GPU(s) per node of compute profile gpu-small "
        "(Standard_NC4as_T4_v3)"
    )


def test_every_compute_problem_is_reported_at_once():
    with pytest.raises(ManifestError) as caught:
        cluster_for(load_profiles(), compute(profile="gpu-a100", nodes=3, processes_per_node=2))
    assert [p.field for p in caught.value.problems] == ["compute.nodes", "compute.processes_per_node"]


def test_processes_up_to_the_gpus_run_and_cpu_profiles_are_not_bound_to_gpus():
    big = load_profiles(json.dumps({"t4x4": {"vm_size": "Standard_NC64as_T4_v3", "max_nodes": 2, "tier": "dedicated"}}))
    assert cluster_for(big, compute(profile="t4x4", processes_per_node=4)).processes_per_node == 4
    assert cluster_for(big, compute(profile="cpu-debug", processes_per_node=4)).processes_per_node == 4


# -------------------------------------------------------------- cluster names (issue 12, item 4)
@pytest.mark.parametrize("name", ["gpu-100", "a100-2", "gpu-1-2", "x-9"])
def test_a_profile_whose_cluster_name_azure_ml_refuses_fails_at_load(name):
    fields = {"vm_size": "Standard_NC24ads_A100_v4", "max_nodes": 1, "tier": "dedicated"}
    message = problems({name: fields})
    assert f"{name}: a profile name is 2-16 lowercase letters" in message
    assert f"so that aztrain-{name} is a valid Azure ML compute name" in message


@pytest.mark.parametrize("name", ["gpu-100x", "a100", "h100-spot", "v2-a", "ab"])
def test_profile_names_that_make_valid_cluster_names_load(name):
    fields = {"vm_size": "Standard_NC24ads_A100_v4", "max_nodes": 1, "tier": "dedicated"}
    assert load_profiles(json.dumps({name: fields}))[name].cluster == f"aztrain-{name}"


def test_the_compute_name_rule_is_the_rest_specs():
    """3-24 characters, a letter first, letters, digits and '-', not ending in '-' and digits."""
    import re

    from aztrain.domain.profiles import COMPUTE_NAME_PATTERN

    valid = ["abc", "aztrain-gpu-small-low", "a" * 24, "a-1b"]
    invalid = ["ab", "a" * 25, "1abc", "abc-1", "ab_c", "aztrain-gpu-100"]
    assert [n for n in valid + invalid if re.fullmatch(COMPUTE_NAME_PATTERN, n)] == valid


# ---------------------------------------------------------------- what a deployment offers


def test_a_deployment_offers_only_its_allowed_profiles_and_names_them() -> None:
    profiles = load_profiles("", allowed=("gpu-small",))
    assert list(profiles) == ["gpu-small"]
    with pytest.raises(
        ManifestError, match=r"'gpu-a100' is not a compute profile this deployment offers; use one of: gpu-small$"
    ):
        select_profile(profiles, compute(profile="gpu-a100"))
    with pytest.raises(
        ManifestError, match=r"compute.priority: no compute profile runs .* low_priority .* gpu-small \("
    ):
        select_profile(profiles, compute(priority="low"))  # gpu-small-low exists, but is not offered


def test_an_allowed_profile_that_does_not_exist_fails_the_app_at_startup() -> None:
    with pytest.raises(ConfigError, match="AZTRAIN_ALLOWED_PROFILES names no profile gpu-tiny"):
        load_profiles("", allowed=("gpu-small", "gpu-tiny"))


def test_the_setting_is_a_comma_separated_list() -> None:
    settings = Settings.from_env({"AZTRAIN_ALLOWED_PROFILES": " gpu-small, gpu-a100 ,"})
    assert settings.allowed_profiles == ("gpu-small", "gpu-a100")
    assert Settings.from_env({}).allowed_profiles == ()  # every profile, as for local development

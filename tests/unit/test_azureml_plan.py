"""`aztrain plan`: the compute and job definitions as YAML, offline, in a form the SDK (and `az ml`) loads back."""

from __future__ import annotations

import io
import json
import shlex

import pytest
import yaml

from aztrain.domain.errors import ConfigError, ManifestError
from aztrain.service.plan import COMPUTE_SCHEMA, JOB_SCHEMA, render_plan
from aztrain.service.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas

MANIFEST = """
apiVersion: aztrain/v1
kind: TrainingJob
name: digits
data: {container: datasets, prefix: digits/}
trainer: {args: {epochs: 3, lr: 0.1}}
compute: {profile: gpu-a100, nodes: 2, processes_per_node: 1, max_runtime: 45m}
"""


def test_plan_prints_the_cluster_and_the_job():
    text = render_plan(MANIFEST, Settings())
    assert text.startswith("# aztrain plan for job digits")
    compute, job = yaml.safe_load_all(text)
    assert compute == {
        "$schema": COMPUTE_SCHEMA,
        "name": "aztrain-gpu-a100",
        "type": "amlcompute",
        "tags": {"aztrain.profile": "gpu-a100"},
        "size": "Standard_NC24ads_A100_v4",
        "tier": "dedicated",
        "min_instances": 0,
        "max_instances": 2,
        "idle_time_before_scale_down": 120,
        "ssh_public_access_enabled": False,
        "enable_node_public_ip": True,
    }
    assert job["$schema"] == JOB_SCHEMA
    assert (job["name"], job["type"], job["compute"]) == ("aztrain-<run-id>", "command", "azureml:aztrain-gpu-a100")
    assert job["resources"]["instance_count"] == 2
    assert job["distribution"] == {"type": "mpi", "process_count_per_instance": 1}
    assert job["limits"] == {"timeout": 2700}
    assert job["environment"] == "azureml:aztrain-trainer@latest"
    assert job["inputs"]["data"] == {
        "mode": "ro_mount",
        "type": "uri_folder",
        "path": "azureml://datastores/aztrain_datasets/paths/digits/",
    }
    assert job["outputs"]["outputs"]["path"] == "azureml://datastores/aztrain_runs/paths/digits/<run-id>/outputs/"
    assert job["outputs"]["outputs"]["mode"] == "rw_mount"
    assert set(job["tags"]) == {
        "aztrain.run",
        "aztrain.job",
        "aztrain.manifest",
        "aztrain.snapshot",
        "aztrain.correlation",
    }
    words = shlex.split(job["command"])
    assert json.loads(words[words.index("--args-json") + 1]) == {"epochs": 3, "lr": 0.1}
    assert words[words.index("--snapshot-id") + 1] == "<snapshot-id>"


def test_plan_shows_the_distribution_a_pytorch_manifest_is_submitted_with():
    text = render_plan(MANIFEST.replace("trainer: {", "trainer: {distribution: pytorch, "), Settings())
    assert text.startswith("# aztrain plan for job digits (manifest ") and "distribution pytorch) on" in text
    job = list(yaml.safe_load_all(text))[1]
    assert job["distribution"] == {"type": "pytorch", "process_count_per_instance": 1}
    words = shlex.split(job["command"])
    assert words[words.index("--distribution") + 1] == "pytorch"
    assert "distribution horovod) on" in render_plan(MANIFEST, Settings()).splitlines()[0]


def test_each_document_loads_back_with_the_sdk():
    from azure.ai.ml import load_compute, load_job

    compute, job = text_documents(render_plan(MANIFEST, Settings()))
    assert load_compute(source=io.StringIO(compute)).max_instances == 2
    assert load_job(source=io.StringIO(job)).resources.instance_count == 2


def test_plan_follows_configured_profiles_environment_and_identity():
    identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-train"
    settings = Settings(
        compute_profiles='{"gpu-a100": {"max_nodes": 8}}',
        aml_environment="aztrain-trainer:4",
        aml_compute_identity_id=identity,
    )
    compute, job = yaml.safe_load_all(render_plan(MANIFEST, settings))
    assert compute["max_instances"] == 8 and job["environment"] == "azureml:aztrain-trainer:4"
    assert compute["identity"] == {"type": "user_assigned", "user_assigned_identities": [{"resource_id": identity}]}


def test_a_manifest_the_backend_cannot_run_is_refused():
    with pytest.raises(ManifestError, match=r"compute\.nodes: 3 is more than the 2 node"):
        render_plan(MANIFEST.replace("nodes: 2", "nodes: 3"), Settings())
    with pytest.raises(ManifestError, match="name: required field is missing"):
        render_plan("apiVersion: aztrain/v1\nkind: TrainingJob\ndata: {container: datasets}\n", Settings())
    with pytest.raises(ConfigError, match="AZTRAIN_COMPUTE_PROFILES"):
        render_plan(MANIFEST, Settings(compute_profiles="[]"))


def text_documents(text: str) -> list[str]:
    return text.split("---\n")[1:]


def test_the_example_plans_onto_a_current_gpu_with_no_more_processes_per_node_than_gpus():
    from aztrain.domain.profiles import GPUS_PER_NODE, retirement_notice
    from aztrain.service.settings import PROJECT_ROOT

    compute, job = yaml.safe_load_all(render_plan((PROJECT_ROOT / "examples" / "digits.yaml").read_bytes(), Settings()))
    assert compute["size"] == "Standard_NC4as_T4_v3" and not retirement_notice(compute["size"])
    assert job["distribution"]["process_count_per_instance"] <= GPUS_PER_NODE[compute["size"]]
    assert job["resources"]["instance_count"] * job["distribution"]["process_count_per_instance"] == 2


def test_plan_refuses_more_processes_per_node_than_gpus_naming_both_numbers():
    with pytest.raises(ManifestError) as caught:
        render_plan(MANIFEST.replace("processes_per_node: 1", "processes_per_node: 2"), Settings())
    assert str(caught.value.problems[0]).startswith(
        "compute.processes_per_node: 2 is more than the 1 GPU(s) per node of compute profile gpu-a100"
    )


SERVERLESS = MANIFEST.replace("profile: gpu-a100", "profile: serverless-t4, priority: low")


def test_a_serverless_manifest_plans_one_command_job_with_no_compute_target_and_its_tier():
    identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-train"
    text = render_plan(SERVERLESS, Settings(aml_compute_identity_id=identity))
    (job,) = yaml.safe_load_all(text)  # no cluster to create
    assert "serverless compute (no cluster)" in text and identity in text
    assert job["$schema"] == JOB_SCHEMA and "compute" not in job
    assert job["resources"]["instance_type"] == "Standard_NC4as_T4_v3" and job["resources"]["instance_count"] == 2
    assert job["queue_settings"] == {"job_tier": "spot"}
    assert job["identity"] == {"type": "managed_identity"}
    dedicated = yaml.safe_load(render_plan(SERVERLESS.replace("priority: low", "priority: dedicated"), Settings()))
    assert dedicated["queue_settings"] == {"job_tier": "standard"}


def test_a_serverless_plan_loads_back_with_the_sdk_as_a_serverless_job():
    from azure.ai.ml import load_job

    (document,) = text_documents(render_plan(SERVERLESS, Settings()))
    job = load_job(source=io.StringIO(document))
    assert job.compute is None and job.resources.instance_type == "Standard_NC4as_T4_v3"
    assert job.queue_settings.job_tier == "spot"


def test_a_serverless_profile_refuses_more_processes_per_node_than_gpus_naming_both_numbers():
    with pytest.raises(ManifestError) as caught:
        render_plan(SERVERLESS.replace("processes_per_node: 1", "processes_per_node: 4"), Settings())
    assert str(caught.value.problems[0]).startswith(
        "compute.processes_per_node: 4 is more than the 1 GPU(s) per node of compute profile serverless-t4"
    )

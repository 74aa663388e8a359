"""The AmlCompute and command-job definitions, checked offline by the SDK's own validation and REST serialization."""

from __future__ import annotations

import io
import json
import shlex
from dataclasses import replace
from typing import Any

import pytest
import yaml

from aztrain.adapters.compute.azureml import (
    BASE_IMAGE,
    build_compute,
    build_job,
    datastore_for,
    environment_for,
    trainer_code,
    trainer_command,
)
from aztrain.domain.manifest import ComputeSpec, Distribution
from aztrain.domain.profiles import DEFAULT_PROFILES, ComputeProfile, cluster_for, load_profiles
from aztrain.domain.records import JobSubmission

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas

RUN_ID = "8232054399990-a1b2c3"
TAGS = {
    "aztrain.run": RUN_ID,
    "aztrain.job": "digits",
    "aztrain.manifest": "0f" * 32,
    "aztrain.snapshot": "snap-3f1e2d4c",
    "aztrain.correlation": "upload-event-42",
}


def submission(
    profile: ComputeProfile, *, args: dict[str, Any] | None = None, distribution: Distribution = "horovod"
) -> JobSubmission:
    """A multi-node run of `profile` at its maximum, one process per GPU (one on a CPU node)."""
    priority = "low" if profile.tier == "low_priority" else "dedicated"
    compute = ComputeSpec(
        profile=profile.name,
        nodes=profile.max_nodes,
        processes_per_node=processes_per_node(profile),
        priority=priority,
        max_runtime="1h30m",
    )
    return JobSubmission(
        name=f"aztrain-{RUN_ID}",
        run_id=RUN_ID,
        job="digits",
        cluster=cluster_for(load_profiles(), compute),
        entrypoint="trainer.train",
        args=args if args is not None else {"epochs": 3, "lr": 0.01},
        data_container="datasets",
        data_prefix="digits/v2/",
        snapshot="_snapshots/3f1e2d4c5b6a7980.json",
        output_container="runs",
        output_prefix=f"digits/{RUN_ID}/",
        max_runtime_seconds=compute.max_runtime,
        snapshot_id=TAGS["aztrain.snapshot"],
        manifest_hash=TAGS["aztrain.manifest"],
        correlation=TAGS["aztrain.correlation"],
        distribution=distribution,
    )


def processes_per_node(profile: ComputeProfile) -> int:
    return max(profile.gpus_per_node, 1)


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@pytest.mark.parametrize("profile", [p for p in DEFAULT_PROFILES if not p.serverless], ids=lambda p: p.name)
def test_compute_rest_body_scales_from_zero(profile):
    from azure.ai.ml import load_compute

    compute = build_compute(profile)
    body = compute._to_rest_object().as_dict()["properties"]
    assert body["computeType"] == "AmlCompute"
    assert body["properties"]["vmSize"] == profile.vm_size
    assert body["properties"]["vmPriority"] == {"dedicated": "Dedicated", "low_priority": "LowPriority"}[profile.tier]
    assert body["properties"]["scaleSettings"] == {
        "minNodeCount": 0,
        "maxNodeCount": profile.max_nodes,
        "nodeIdleTimeBeforeScaleDown": "PT2M",
    }
    assert body["properties"]["remoteLoginPortPublicAccess"] == "Disabled"
    # The SDK's own schema (what `az ml compute create -f` checks) accepts the definition.
    reloaded = load_compute(source=io.StringIO(yaml.safe_dump(plain(compute._to_dict()))))
    assert (reloaded.name, reloaded.size, reloaded.tier, reloaded.min_instances) == (
        profile.cluster,
        profile.vm_size,
        profile.tier,
        0,
    )


def test_compute_runs_as_the_configured_identity():
    identity = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-compute"
    )
    body = build_compute(DEFAULT_PROFILES[0], identity=identity)._to_rest_object().as_dict()
    assert body["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}
    assert "identity" not in build_compute(DEFAULT_PROFILES[0])._to_rest_object().as_dict()


@pytest.mark.parametrize(("distribution", "rest_type"), [("horovod", "Mpi"), ("pytorch", "PyTorch")])
@pytest.mark.parametrize("profile", DEFAULT_PROFILES, ids=lambda p: p.name)
def test_job_passes_sdk_validation_and_its_rest_body_carries_the_run(profile, distribution, rest_type):
    from azure.ai.ml import load_job

    job = build_job(
        submission(profile, distribution=distribution), environment="aztrain-trainer:3", code=trainer_code()
    )
    assert job._validate().passed
    body = job._to_job()._to_rest_object().as_dict()["properties"]
    assert body["jobType"] == "Command"
    if profile.serverless:  # no compute target: serverless nodes of the profile's size, on the job's tier
        assert "computeId" not in body
        assert body["resources"]["instanceType"] == profile.vm_size
        assert body["queueSettings"] == {"jobTier": "Standard"}
    else:
        assert body["computeId"] == profile.cluster
    assert body["experimentName"] == "digits"
    assert body["resources"]["instanceCount"] == profile.max_nodes
    # Horovod over MPI (mpirun starts the ranks) or PyTorch DDP (Azure ML starts them, with MASTER_ADDR etc.).
    assert body["distribution"] == {
        "distributionType": rest_type,
        "processCountPerInstance": processes_per_node(profile),
    }
    assert body["inputs"]["data"] == {
        "jobInputType": "uri_folder",
        "mode": "ReadOnlyMount",
        "uri": "azureml://datastores/aztrain_datasets/paths/digits/v2/",
    }
    assert body["inputs"]["snapshot"] == {  # what the trainer reads of the mounted prefix
        "jobInputType": "uri_file",
        "mode": "Download",
        "uri": "azureml://datastores/aztrain_runs/paths/_snapshots/3f1e2d4c5b6a7980.json",
    }
    assert body["outputs"]["outputs"] == {
        "jobOutputType": "uri_folder",
        "mode": "ReadWriteMount",
        "uri": f"azureml://datastores/aztrain_runs/paths/digits/{RUN_ID}/outputs/",
    }
    assert body["limits"] == {"jobLimitsType": "Command", "timeout": "PT1H30M"}
    assert body["tags"] == TAGS
    assert body["environmentId"] == "aztrain-trainer:3"
    # And the CLI schema accepts the job as YAML (what `aztrain plan` prints).
    reloaded = load_job(source=io.StringIO(yaml.safe_dump(plain(job._to_job()._to_dict()))))
    assert reloaded.resources.instance_count == profile.max_nodes


@pytest.mark.parametrize(
    "environment, reference",
    [
        ({}, "aztrain-horovod@latest"),  # the default, given in the YAML style (`azureml:` prefix)
        ({"registered": "team-env@7"}, "team-env:7"),
        ({"registered": "team-env@latest"}, "team-env@latest"),
    ],
)
def test_registered_environments_become_the_sdks_references(environment, reference):
    job = JobSubmission(**{**submission(DEFAULT_PROFILES[0]).__dict__, "environment": environment})
    assert environment_for(job, default="azureml:aztrain-horovod@latest", code=trainer_code()) == reference


def test_an_environment_from_the_snapshots_requirements_is_named_by_its_content(tmp_path):
    (tmp_path / "requirements.txt").write_text("# pinned\nscikit-learn==1.6.1\n")
    job = JobSubmission(
        **{**submission(DEFAULT_PROFILES[0]).__dict__, "environment": {"requirements": "requirements.txt"}}
    )
    built = environment_for(job, default="unused", code=tmp_path)
    assert built.image == BASE_IMAGE and built.version == "1" and built.name.startswith("aztrain-")
    assert built.conda_file["dependencies"][-1] == {"pip": ["scikit-learn==1.6.1"]}
    assert environment_for(job, default="unused", code=tmp_path).name == built.name  # built once per distinct file
    (tmp_path / "requirements.txt").write_text("scikit-learn==1.7.0\n")
    assert environment_for(job, default="unused", code=tmp_path).name != built.name


def command_words(job: JobSubmission) -> tuple[dict[str, str], list[str]]:
    """The command's `env` assignments and the program's words after them."""
    words = shlex.split(trainer_command(job))
    assert words[0] == "env"
    assignments = [w for w in words[1:] if "=" in w and w.split("=", 1)[0].isupper()]
    return dict(w.split("=", 1) for w in assignments), words[1 + len(assignments) :]


@pytest.mark.parametrize(
    "args",
    [
        {"epochs": 3, "lr": 0.01, "augment": True},
        {"note": 'it\'s; rm -rf / $(reboot) `id` "quoted" && echo pwned'},
        {},
    ],
)
def test_trainer_arguments_are_one_quoted_word_that_decodes_to_the_manifest_args(args):
    env, words = command_words(submission(DEFAULT_PROFILES[0], args=args))
    assert env["AZTRAIN_DATA_DIR"] == "${{inputs.data}}" and env["AZTRAIN_OUTPUT_DIR"] == "${{outputs.outputs}}"
    assert words[:3] == ["python", "-m", "trainer.train"]
    assert words[3:9] == [
        "--data-dir", "${{inputs.data}}", "--output-dir", "${{outputs.outputs}}",
        "--snapshot-file", "${{inputs.snapshot}}",
    ]  # fmt: skip
    assert words[9] == "--args-json" and json.loads(words[10]) == args
    assert words[11:] == [
        "--distribution", "horovod",
        "--snapshot-id", TAGS["aztrain.snapshot"], "--manifest-hash", TAGS["aztrain.manifest"],
    ]  # fmt: skip


def test_user_code_runs_its_entrypoint_with_each_argument_as_a_quoted_flag():
    args = {"epochs": 3, "lr": 0.5, "fast": False, "note": "$(reboot); echo pwned"}
    job = JobSubmission(
        **{
            **submission(DEFAULT_PROFILES[0], args=args).__dict__,
            "entrypoint": "src/train.py",
            "code_snapshot": "code-1",
        }
    )
    env, words = command_words(job)
    assert (
        env["AZTRAIN_CHECKPOINT_DIR"] == "${{outputs.outputs}}/checkpoints" and env["AZTRAIN_CODE_SNAPSHOT"] == "code-1"
    )
    assert words == [
        "python",
        "src/train.py",
        "--epochs",
        "3",
        "--lr",
        "0.5",
        "--fast",
        "false",
        "--note",
        args["note"],
    ]
    assert "'$(reboot); echo pwned'" in trainer_command(job)  # one quoted word: the shell never runs it
    module = JobSubmission(**{**job.__dict__, "entrypoint": "mypkg.train", "args": {}})
    assert command_words(module)[1] == ["python", "-m", "mypkg.train"]


def test_code_snapshot_is_the_trainer_package_alone():
    folder = trainer_code()
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"trainer/__init__.py", "trainer/train.py"} <= files
    assert all(f.startswith("trainer/") and f.endswith(".py") and "__pycache__" not in f for f in files)
    assert trainer_code() == folder


def test_datastores_are_named_after_their_containers():
    assert datastore_for("datasets") == "aztrain_datasets"
    assert datastore_for("my-data") == "aztrain_my_data"


def test_a_serverless_job_runs_as_the_workspace_identity_on_the_tier_its_priority_names():
    identity = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-train"
    serverless = next(p for p in DEFAULT_PROFILES if p.serverless)
    job = submission(serverless)
    spot = replace(job, cluster=replace(job.cluster, priority="low"))
    body = build_job(spot, environment="e:1", code=trainer_code(), identity=identity)._to_job()._to_rest_object()
    properties = body.as_dict()["properties"]
    assert properties["queueSettings"] == {"jobTier": "Spot"}
    assert properties["identity"] == {"identityType": "Managed", "resourceId": identity}

"""The Azure ML backend end to end: the real `MLClient` over a fake of the service at the HTTP transport."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest

from aztrain.adapters.compute.azureml import AzureMLBackend, connect
from aztrain.adapters.memory import InMemoryDataStore
from aztrain.domain.code import CodeFile, code_file_blob, code_listing_blob, code_snapshot
from aztrain.domain.errors import BackendError, ConfigError
from aztrain.domain.manifest import ComputeSpec, Distribution
from aztrain.domain.records import ClusterSpec, JobObservation, JobPhase, JobSubmission
from aztrain.service.settings import Settings
from tests.fakes.aml_service import (
    PREEMPTION_MESSAGE,
    PROVISION_SECONDS,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeAzureML,
    FakeCredential,
    distribution_problem,
)

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas

#: A low-priority profile that deletes its cluster when idle, next to the defaults.
SPOT = {
    "spot": {"vm_size": "Standard_NC24ads_A100_v4", "max_nodes": 2, "tier": "low_priority", "delete_when_idle": True}
}
WS = f"/workspaces/{WORKSPACE}"
IDENTITY = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-aztrain-compute"
)


def workspace_settings(**fields: object) -> Settings:
    return Settings(
        aml_subscription_id=SUBSCRIPTION,
        aml_resource_group=RESOURCE_GROUP,
        aml_workspace=WORKSPACE,
        aml_environment="aztrain-trainer@latest",
        aml_compute_identity_id=IDENTITY,
        compute_profiles=json.dumps(SPOT),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def fake() -> Iterator[FakeAzureML]:
    service = FakeAzureML()
    with service.patch_blob_uploads():
        yield service
    assert service.unhandled == []  # every request the SDK sent was one the fake understood


@pytest.fixture
def backend(fake: FakeAzureML) -> AzureMLBackend:
    settings = workspace_settings()
    return AzureMLBackend(settings, client=connect(settings, credential=FakeCredential(), transport=fake.transport()))


def provisioned(backend: AzureMLBackend, fake: FakeAzureML, **compute: object) -> ClusterSpec:
    spec = backend.cluster_for(ComputeSpec.model_validate(compute))
    backend.ensure_cluster(spec)
    fake.advance(PROVISION_SECONDS)
    assert backend.ensure_cluster(spec) == spec.nodes
    return spec


def submission(
    spec: ClusterSpec, run_id: str = "8232054399990-a1b2c3", distribution: Distribution = "horovod"
) -> JobSubmission:
    return JobSubmission(
        name=f"aztrain-{run_id}",
        run_id=run_id,
        job="digits",
        cluster=spec,
        entrypoint="trainer.train",
        args={"epochs": 2},
        data_container="datasets",
        data_prefix="digits/",
        snapshot="_snapshots/3f1e2d4c5b6a7980.json",
        output_container="runs",
        output_prefix=f"digits/{run_id}/",
        max_runtime_seconds=3600,
        snapshot_id="snap-3f1e2d4c",
        manifest_hash="ab" * 32,
        distribution=distribution,
    )


def test_a_cluster_is_created_once_with_min_zero_and_is_ready_once_provisioned(backend, fake):
    spec = backend.cluster_for(ComputeSpec(nodes=2))
    assert backend.ensure_cluster(spec) == 0
    assert backend.ensure_cluster(spec) == 0  # still Creating: asked again, not created again
    assert fake.calls("PUT", f"{WS}/computes/") == 1
    stored = fake.clusters["aztrain-gpu-small"].resource["properties"]["properties"]
    assert stored["vmSize"] == "Standard_NC4as_T4_v3" and stored["vmPriority"] == "Dedicated"
    assert stored["scaleSettings"] == {"minNodeCount": 0, "maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT2M"}
    # The nodes mount identity-based datastores as this identity.
    assert list(fake.clusters["aztrain-gpu-small"].resource["identity"]["userAssignedIdentities"]) == [IDENTITY]
    fake.advance(PROVISION_SECONDS)
    # Ready without any node: Azure ML allocates them when the job is queued.
    assert backend.ensure_cluster(spec) == 2 and backend.cluster_nodes(spec.name) == 0
    assert fake.calls("PUT", f"{WS}/computes/") == 1


def test_submit_creates_the_job_once_and_a_repeat_finds_it(backend, fake):
    spec = provisioned(backend, fake, nodes=2)
    job = submission(spec)
    assert backend.submit(job) == job.name
    assert backend.submit(job) == job.name  # a redelivered event or a crash before the run was saved
    assert fake.calls("PUT", f"{WS}/jobs/") == 1
    props = fake.jobs[job.name].resource["properties"]
    assert props["computeId"].endswith("/computes/aztrain-gpu-small")
    assert props["environmentId"].endswith("/environments/aztrain-trainer/versions/2")  # @latest, resolved
    assert props["resources"]["instanceCount"] == 2 and props["distribution"]["processCountPerInstance"] == 1
    assert (
        props["inputs"]["data"]["mode"] == "ReadOnlyMount" and props["outputs"]["outputs"]["mode"] == "ReadWriteMount"
    )
    assert props["tags"]["aztrain.run"] == job.run_id and props["limits"]["timeout"] == "PT1H"


def test_a_pytorch_run_is_a_pytorch_job_whose_processes_azure_ml_starts_and_horovod_an_mpi_job(backend, fake):
    spec = provisioned(backend, fake, nodes=2)
    ddp, horovod = submission(spec, distribution="pytorch"), submission(spec, "8232054399980-d4e5f6")
    backend.submit(ddp)
    backend.submit(horovod)
    sent = {job.name: fake.jobs[job.name].resource["properties"] for job in (ddp, horovod)}
    assert sent[ddp.name]["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    assert sent[horovod.name]["distribution"] == {"distributionType": "Mpi", "processCountPerInstance": 1}
    assert "--distribution pytorch" in sent[ddp.name]["command"]  # the trainer joins the group Azure ML formed
    assert "--distribution horovod" in sent[horovod.name]["command"]


def test_the_fake_refuses_a_distribution_the_spec_does_not_define():
    """It checks what the SDK sent against the REST spec's shapes, so a wrong one cannot pass unnoticed."""
    assert distribution_problem({"distributionType": "PyTorch", "processCountPerInstance": 2}) == ""
    assert "'Horovod' is not one of" in distribution_problem({"distributionType": "Horovod"})
    assert "is not of type" in distribution_problem({"distributionType": "PyTorch", "processCountPerInstance": "2"})


def test_a_submit_that_loses_a_race_returns_the_winners_job(backend, fake, monkeypatch):
    spec = provisioned(backend, fake)
    job = submission(spec)
    backend.submit(job)
    # Another worker's job appears between this submit's look-up and its create.
    monkeypatch.setattr(backend, "_get_job", lambda name: None)
    assert backend.submit(job) == job.name
    assert fake.calls("PUT", f"{WS}/jobs/") == 2 and len(fake.jobs) == 1  # the second create was refused


def test_a_second_run_reuses_the_uploaded_code_snapshot(backend, fake):
    spec = provisioned(backend, fake)
    backend.submit(submission(spec, "8232054399990-a1b2c3"))
    uploaded = fake.calls("PUT", "/azureml-blobstore-")
    assert uploaded > 0 and any(blob.endswith("/trainer/train.py") for blob in fake.uploads)
    backend.submit(submission(spec, "8232054399980-d4e5f6"))
    assert fake.calls("PUT", "/azureml-blobstore-") == uploaded
    assert len(fake.jobs) == 2


@pytest.mark.parametrize("spelling", [str, str.lower, str.upper], ids=["as-sent", "lower", "upper"])
def test_status_progression_is_observed_as_phases(backend, fake, spelling):
    spec = provisioned(backend, fake, nodes=2)
    job_id = backend.submit(submission(spec))
    seen = []
    for status in ("NotStarted", "Queued", "Preparing", "Running", "Finalizing", "Completed"):
        fake.set_status(job_id, spelling(status))
        observed = backend.observe(job_id)
        assert observed.status == spelling(status)  # the backend's own word, kept for history
        seen.append((observed.phase, backend.cluster_nodes(spec.name)))
    assert seen == [
        (JobPhase.PENDING, 0),
        (JobPhase.PENDING, 0),
        (JobPhase.PENDING, 2),  # nodes are allocated while the job prepares and runs
        (JobPhase.RUNNING, 2),
        (JobPhase.RUNNING, 2),
        (JobPhase.COMPLETED, 2),  # and kept until the idle time passes
    ]
    assert backend.observe(job_id).error == ""


@pytest.mark.parametrize("status", ["NotResponding", "Paused", "Unknown", "Scheduled"])
def test_statuses_that_say_nothing_of_the_jobs_life_are_unknown_not_an_error(backend, fake, status):
    job_id = backend.submit(submission(provisioned(backend, fake)))
    fake.set_status(job_id, status)  # "Scheduled": a status newer than this table
    assert backend.observe(job_id) == JobObservation(JobPhase.UNKNOWN, status)


def test_cancel_is_idempotent(backend, fake):
    job_id = backend.submit(submission(provisioned(backend, fake)))
    fake.set_status(job_id, "Running")
    backend.cancel(job_id)
    backend.cancel(job_id)  # the job is CancelRequested now: refused, and nothing to do
    assert backend.observe(job_id).phase is JobPhase.STOPPING
    fake.advance(5)
    assert backend.observe(job_id).phase is JobPhase.CANCELED
    backend.cancel(job_id)  # the service refuses to cancel a finished job; nothing is left to do
    backend.cancel("aztrain-no-such-job")
    assert fake.calls("POST", "/cancel") == 4


@pytest.mark.parametrize(
    "status", ["Finalizing", "CancelRequested", "NotResponding", "Unknown", "Paused", "Completed", "Failed"]
)
def test_cancel_of_a_job_azure_ml_will_not_cancel_is_a_no_op_the_reconciler_settles(backend, fake, status):
    job_id = backend.submit(submission(provisioned(backend, fake)))
    fake.set_status(job_id, status)
    backend.cancel(job_id)
    assert fake.replies_to("POST", "/cancel")[-1].status == 400  # asked, and refused as Azure ML does
    assert fake.jobs[job_id].status == status


def test_a_preempted_low_priority_job_is_observed_as_preempted_with_its_reason(backend, fake):
    spec = provisioned(backend, fake, profile="gpu-small", priority="low", nodes=2)
    assert spec.name == "aztrain-gpu-small-low"
    assert fake.clusters[spec.name].resource["properties"]["properties"]["vmPriority"] == "LowPriority"
    job_id = backend.submit(submission(spec))
    fake.set_status(job_id, "Running")
    fake.preempt(job_id)
    observed = backend.observe(job_id)
    assert (observed.phase, observed.status, observed.preempted) == (JobPhase.FAILED, "Failed", True)
    assert observed.error == f"UserError: {PREEMPTION_MESSAGE}"  # the reason is in the message alone
    assert backend.cluster_nodes(spec.name) == 0


def test_an_ordinary_failure_is_not_preemption(backend, fake):
    job_id = backend.submit(submission(provisioned(backend, fake)))
    fake.fail(job_id, "UserError", "Execution failed. User process 'python' exited with status code 2.")
    assert backend.observe(job_id) == JobObservation(
        JobPhase.FAILED,
        "Failed",
        "UserError: Execution failed. User process 'python' exited with status code 2.",
        preempted=False,
    )


def test_scale_to_zero_leaves_min_zero_and_the_nodes_go_after_the_idle_time(backend, fake):
    spec = provisioned(backend, fake, nodes=2)
    job_id = backend.submit(submission(spec))
    fake.set_status(job_id, "Running")
    fake.set_status(job_id, "Completed")
    backend.scale_to_zero(spec.name)
    assert fake.calls("PUT", f"{WS}/computes/") == 1  # min 0 and the short idle time are already set
    fake.advance(60)
    assert backend.cluster_nodes(spec.name) == 2
    fake.advance(60)
    assert backend.cluster_nodes(spec.name) == 0
    assert "aztrain-gpu-small" in fake.clusters


def test_scale_to_zero_restores_scale_settings_changed_behind_its_back(backend, fake):
    spec = provisioned(backend, fake)
    fake.clusters[spec.name].scale.update(minNodeCount=1, nodeIdleTimeBeforeScaleDown="PT30M")
    backend.scale_to_zero(spec.name)
    assert fake.clusters[spec.name].scale == {
        "minNodeCount": 0,
        "maxNodeCount": 4,
        "nodeIdleTimeBeforeScaleDown": "PT2M",
    }


def test_a_profile_that_deletes_idle_clusters_deletes_once_and_recreates_on_next_need(backend, fake):
    spec = provisioned(backend, fake, profile="spot", priority="low", nodes=2)
    job_id = backend.submit(submission(spec))
    fake.set_status(job_id, "Running")
    fake.set_status(job_id, "Completed")
    backend.scale_to_zero(spec.name)
    backend.scale_to_zero(spec.name)  # the reconciler repeats it until it sees zero nodes
    assert fake.calls("DELETE", f"{WS}/computes/aztrain-spot") == 1
    assert backend.cluster_nodes(spec.name) == 0
    assert backend.ensure_cluster(spec) == 0  # still deleting: a new run waits
    fake.advance(PROVISION_SECONDS * 2)
    assert "aztrain-spot" not in fake.clusters
    assert backend.ensure_cluster(spec) == 0 and fake.calls("PUT", f"{WS}/computes/aztrain-spot") == 2


def test_unknown_clusters_have_no_nodes_and_vanished_jobs_fail(backend, fake):
    assert backend.cluster_nodes("aztrain-cpu-debug") == 0
    backend.scale_to_zero("aztrain-cpu-debug")
    observed = backend.observe("aztrain-8232054399990-ffffff")
    assert observed.phase is JobPhase.FAILED and "no longer exists" in observed.error


def test_a_cluster_that_failed_to_provision_is_reported(backend, fake):
    spec = backend.cluster_for(ComputeSpec())
    backend.ensure_cluster(spec)
    fake.clusters[spec.name].state = "Failed"
    with pytest.raises(BackendError, match="aztrain-gpu-small failed to provision"):
        backend.ensure_cluster(spec)


def test_the_workspace_settings_are_required_up_front():
    incomplete = replace(workspace_settings(), aml_workspace="", aml_resource_group="")
    for build in (lambda: AzureMLBackend(incomplete), lambda: connect(incomplete, credential=FakeCredential())):
        with pytest.raises(ConfigError) as caught:
            build()
        assert caught.value.setting == "AZTRAIN_AML_RESOURCE_GROUP"
        assert "AZTRAIN_AML_WORKSPACE" in str(caught.value)


def test_user_code_runs_from_its_snapshot_with_its_entrypoint_args_and_registered_environment(fake):
    """The job Azure ML gets for user code: the snapshot's folder as its code, the program quoted, the environment."""
    data, source = InMemoryDataStore(), b"print('training')\n"
    snapshot = code_snapshot([CodeFile("train.py", len(source), hashlib.sha256(source).hexdigest())])
    data.write("runs", code_file_blob(snapshot.id, "train.py"), source)
    data.write("runs", code_listing_blob(snapshot.id), json.dumps(snapshot.to_json()).encode())
    settings = workspace_settings()
    client = connect(settings, credential=FakeCredential(), transport=fake.transport())
    backend = AzureMLBackend(settings, client=client, data=data)
    spec = backend.cluster_for(ComputeSpec(nodes=1))
    backend.ensure_cluster(spec)
    fake.advance(PROVISION_SECONDS)
    fake.environments["team-env"] = ["3"]
    job = submission(spec)
    mine = JobSubmission(
        **{
            **job.__dict__,
            "entrypoint": "train.py",
            "args": {"epochs": 1, "note": "$(reboot)"},
            "code_snapshot": snapshot.id,
            "environment": {"registered": "team-env@3"},
        }
    )
    backend.submit(mine)  # the fake refuses a code, command or environment not of the REST spec's CommandJob
    props = fake.jobs[mine.name].resource["properties"]
    assert props["command"].endswith("python train.py --epochs 1 --note '$(reboot)'")
    assert (
        "AZTRAIN_DATA_DIR=${{inputs.data}}" in props["command"]
        and f"AZTRAIN_CODE_SNAPSHOT={snapshot.id}" in props["command"]
    )
    assert props["environmentId"].endswith("/environments/team-env/versions/3")
    assert props["tags"]["aztrain.code"] == snapshot.id and "/codes/" in props["codeId"]

"""The control plane on the Azure ML backend (real `MLClient`, faked service), driven by polling and by events."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aztrain.adapters.compute.azureml import AzureMLBackend, connect
from aztrain.adapters.memory import InMemoryControlStore, InMemoryDataStore
from aztrain.domain.runs import Run, RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import Settings
from tests.clock import Clock
from tests.fakes.aml_service import (
    PROVISION_SECONDS,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeAzureML,
    FakeCredential,
)

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "aml" / "run_status_changed.json"
#: The run the fixture event is about (its `runId` is `aztrain-<this>`).
EVENT_RUN_ID = "8232054399990-a1b2c3"
MANIFEST = b"""
apiVersion: aztrain/v1
kind: TrainingJob
name: digits
data: {container: datasets, prefix: digits/}
trainer: {args: {epochs: 2}}
compute: {profile: gpu-small, nodes: 2, processes_per_node: 1, priority: low}
"""


@pytest.fixture
def fake() -> Iterator[FakeAzureML]:
    service = FakeAzureML()
    with service.patch_blob_uploads():
        yield service
    assert service.unhandled == []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def plane(fake: FakeAzureML, clock: Clock) -> ControlPlane:
    settings = Settings(aml_subscription_id=SUBSCRIPTION, aml_resource_group=RESOURCE_GROUP, aml_workspace=WORKSPACE)
    client = connect(settings, credential=FakeCredential(), transport=fake.transport())
    data = InMemoryDataStore()
    data.write("datasets", "digits/digits.npz", b"npz bytes")
    return ControlPlane(
        settings=settings,
        store=InMemoryControlStore(),
        data=data,
        backend=AzureMLBackend(settings, client=client),
        now=clock,
    )


def elapse(fake: FakeAzureML, clock: Clock, seconds: float) -> None:
    fake.advance(seconds)
    clock.advance(seconds)


def submitted(plane: ControlPlane, fake: FakeAzureML, clock: Clock, run_id: str | None = None) -> Run:
    """A manifest accepted, its cluster provisioned and its job submitted."""
    run = plane.submit(MANIFEST, trigger="http", cause="req-1", source="http", run_id=run_id).run
    assert run.state is RunState.ACCEPTED  # recorded: every step from here is the reconciler's
    plane.reconcile()
    run = plane.get_run(run.id)
    assert run.state is RunState.PROVISIONING and run.cluster == "aztrain-gpu-small-low"
    plane.reconcile()
    assert plane.get_run(run.id).state is RunState.PROVISIONING  # the cluster is still being created
    elapse(fake, clock, PROVISION_SECONDS)
    plane.reconcile()
    run = plane.get_run(run.id)
    assert run.state is RunState.SUBMITTED and run.backend_job_id == f"aztrain-{run.id}"
    return run


def status_events(**changes: Any) -> list[dict[str, Any]]:
    """The fixture's RunStatusChanged event (Event Grid schema), with `data` fields changed (and its own id)."""
    (event,) = json.loads(FIXTURE.read_text())
    changed = copy.deepcopy(event)
    changed["data"].update(changes)
    if changes:
        changed["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(changes, sort_keys=True)))
    return [changed]


@pytest.fixture
def deliver(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[dict[str, Any]]], None]:
    """Event Grid's delivery to the real trigger function, decoded by the Functions worker's own converter."""
    import azure.functions as func
    from azure.functions import meta
    from azure.functions.eventgrid import EventGridEventInConverter

    from functions import events

    monkeypatch.setattr(events, "control_plane", lambda: plane)
    app = func.FunctionApp()
    app.register_functions(events.bp)
    handler = next(f for f in app.get_functions() if f.get_function_name() == "on_run_status_changed")

    def send(batch: list[dict[str, Any]]) -> None:
        for raw in batch:
            datum = meta.Datum(json.dumps(raw), "json")
            handler.get_user_function()(EventGridEventInConverter.decode(datum, trigger_metadata={}))

    return send


def test_a_run_completes_by_polling_and_its_cluster_goes_back_to_zero(plane, fake, clock):
    run = submitted(plane, fake, clock)
    states = []
    for status in ("Queued", "Preparing", "Running", "Finalizing", "Completed"):
        if status == "Completed":  # what the job wrote to its rw_mount output
            plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b'{"accuracy": 0.97}')
        fake.set_status(run.backend_job_id, status)
        plane.reconcile()
        states.append(plane.get_run(run.id).state)
    assert states == [RunState.QUEUED, RunState.QUEUED, RunState.RUNNING, RunState.RUNNING, RunState.COMPLETED]
    assert plane.get_run(run.id).metrics == {"accuracy": 0.97}
    cluster = plane.store.get_cluster("azureml", "aztrain-gpu-small-low")
    assert (cluster.desired_nodes, cluster.observed_nodes) == (0, 2)  # idle nodes wait out the idle time
    elapse(fake, clock, 120)
    plane.reconcile()
    cluster = plane.store.get_cluster("azureml", "aztrain-gpu-small-low")
    assert cluster.observed_nodes == 0 and cluster.seconds_to_zero == pytest.approx(120, abs=1)
    assert fake.calls("PUT", "/computes/") == 1 and fake.calls("PUT", "/jobs/") == 1


def completed(plane: ControlPlane, fake: FakeAzureML, clock: Clock, metrics: bytes) -> Run:
    run = submitted(plane, fake, clock)
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", metrics)
    fake.set_status(run.backend_job_id, "Completed")
    plane.reconcile()
    return plane.get_run(run.id)


def test_a_completed_runs_model_is_registered_in_the_workspace_with_its_lineage(plane, fake, clock, deliver):
    run = completed(plane, fake, clock, b'{"accuracy": 0.97, "epochs": 2, "per_class": [0.9, 1.0]}')
    assert run.state is RunState.COMPLETED
    resource = fake.models[("digits", "1")]["properties"]
    assert resource["modelType"] == "custom_model"
    workspace = f"azureml://subscriptions/{SUBSCRIPTION}/resourcegroups/{RESOURCE_GROUP}/workspaces/{WORKSPACE}"
    assert resource["modelUri"] == f"{workspace}/datastores/aztrain_runs/paths/digits/{run.id}/outputs/model.pt"
    assert resource["tags"] == {
        "aztrain.run": run.id,
        "aztrain.snapshot": run.snapshot_id,
        "aztrain.manifest": run.manifest_hash,
        "aztrain.promoted": "false",  # no promote_if gate in this manifest
    }
    assert resource["properties"] == {"accuracy": "0.97", "epochs": "2"}  # scalars only
    deliver(status_events(runId=run.backend_job_id, runStatus="Completed"))  # a late duplicate completion
    plane.reconcile()
    assert list(fake.models) == [("digits", "1")] and fake.calls("PUT", "/models/digits/versions/") == 1


def test_a_workspace_registry_failure_never_holds_the_run_back(plane, fake, clock, caplog):
    fake.add_model("digits", "1", "azureml://datastores/other/paths/model.pt")  # a clash: paths cannot change
    run = completed(plane, fake, clock, b'{"accuracy": 0.97}')
    assert run.state is RunState.COMPLETED
    assert [v.version for v in plane.store.model_versions("digits")] == [1]  # the registry of record has it
    assert "model digits:1 not published to the azureml registry" in caplog.text
    assert "Asset paths cannot be updated" in caplog.text


def test_more_nodes_than_the_profile_allows_is_rejected(plane):
    result = plane.submit(MANIFEST.replace(b"nodes: 2", b"nodes: 9"), trigger="http", cause="x", source="http")
    assert result.run.state is RunState.REJECTED
    assert "compute.nodes: 9 is more than the 4 node(s) compute profile gpu-small-low allows" in result.run.error


def test_cancel_reaches_azure_ml_and_the_run_ends_canceled(plane, fake, clock):
    run = submitted(plane, fake, clock)
    fake.set_status(run.backend_job_id, "Running")
    plane.reconcile()
    assert plane.cancel(run.id, cause="user").state is RunState.CANCEL_REQUESTED
    assert fake.jobs[run.backend_job_id].status == "CancelRequested"
    elapse(fake, clock, 5)
    plane.reconcile()
    assert plane.get_run(run.id).state is RunState.CANCELED


def test_a_preempted_run_resumes_as_the_next_attempt_writing_to_the_same_outputs(plane, fake, clock, deliver):
    run = submitted(plane, fake, clock)
    first = run.backend_job_id
    fake.set_status(first, "Running")
    plane.reconcile()
    fake.preempt(first)
    plane.reconcile()
    run = plane.get_run(run.id)
    assert (run.state, run.attempt, run.backend_job_id) == (RunState.SUBMITTED, 2, f"{first}-a2")
    outputs = [job.resource["properties"]["outputs"]["outputs"]["uri"] for job in fake.jobs.values()]
    assert outputs[0] == outputs[1]  # the checkpoints of attempt 1 are where attempt 2 looks
    deliver(status_events(runId=first, runStatus="Failed"))  # late news of attempt 1
    assert plane.get_run(run.id).state is RunState.SUBMITTED
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b'{"accuracy": 0.95}')
    fake.set_status(run.backend_job_id, "Running")
    fake.set_status(run.backend_job_id, "Completed")
    plane.reconcile()
    assert plane.get_run(run.id).state is RunState.COMPLETED


def test_preemption_beyond_the_attempt_limit_fails_the_run_with_the_reason(plane, fake, clock):
    run = submitted(plane, fake, clock)
    for _ in range(plane.settings.max_preemption_attempts):
        job_id = plane.get_run(run.id).backend_job_id
        fake.set_status(job_id, "Running")
        plane.reconcile()
        fake.preempt(job_id)
        plane.reconcile()
    run = plane.get_run(run.id)
    assert (run.state, run.attempt) == (RunState.FAILED, plane.settings.max_preemption_attempts)
    assert "PreemptionError: Nodes of this job got pre-empted" in run.error
    assert len(fake.jobs) == plane.settings.max_preemption_attempts


def test_a_job_preempted_before_the_reconciler_saw_it_run_resumes_too(plane, fake, clock):
    run = submitted(plane, fake, clock)
    fake.set_status(run.backend_job_id, "Preparing")
    fake.preempt(run.backend_job_id)  # between two polls: the run is still SUBMITTED
    plane.reconcile()
    assert (plane.get_run(run.id).state, plane.get_run(run.id).attempt) == (RunState.SUBMITTED, 2)


def test_a_run_being_canceled_is_not_resubmitted_when_preempted(plane, fake, clock):
    run = submitted(plane, fake, clock)
    fake.set_status(run.backend_job_id, "Running")
    plane.reconcile()
    plane.cancel(run.id, cause="user")
    fake.preempt(run.backend_job_id)  # the nodes went before the cancel landed
    plane.reconcile()
    assert plane.get_run(run.id).is_terminal
    assert list(fake.jobs) == [run.backend_job_id]  # no attempt 2 burning GPUs for a canceled run


def test_a_preemption_reported_by_event_resumes_too(plane, fake, clock, deliver):
    run = submitted(plane, fake, clock, run_id=EVENT_RUN_ID)
    fake.set_status(run.backend_job_id, "Running")
    plane.reconcile()
    fake.preempt(run.backend_job_id)
    deliver(status_events(runStatus="Failed"))  # the event arrives before the reconciler polls
    assert (plane.get_run(run.id).state, plane.get_run(run.id).attempt) == (RunState.SUBMITTED, 2)


def test_run_status_events_drive_the_run_and_never_move_it_backwards(plane, fake, clock, deliver):
    run = submitted(plane, fake, clock, run_id=EVENT_RUN_ID)
    running = status_events()  # the fixture as captured: runStatus "Running"
    deliver(running)
    assert plane.get_run(run.id).state is RunState.RUNNING
    deliver(running)  # Event Grid delivers at least once
    fake.set_status(run.backend_job_id, "Completed")
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b'{"accuracy": 0.9}')
    deliver(status_events(runStatus="completed"))  # Azure ML sends statuses in either case
    deliver(status_events(runStatus="Queued"))  # out of order
    deliver(running)  # late
    run = plane.get_run(run.id)
    assert run.state is RunState.COMPLETED and run.metrics == {"accuracy": 0.9}
    history = [(t.to_state, t.applied, t.cause) for t in plane.store.history(run.id)]
    fixture_event = f"event:{running[0]['id']}"
    assert history[-4:] == [
        (RunState.RUNNING, True, fixture_event),
        (RunState.COMPLETED, True, f"event:{status_events(runStatus='completed')[0]['id']}"),
        (RunState.QUEUED, False, f"event:{status_events(runStatus='Queued')[0]['id']}"),
        (RunState.RUNNING, False, fixture_event),
    ]
    plane.reconcile()  # polling agrees with what the events said
    assert plane.get_run(run.id).state is RunState.COMPLETED


def test_status_events_of_jobs_the_control_plane_did_not_start_change_nothing(plane, deliver):
    deliver(status_events(runId="AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5", runStatus="Failed"))
    assert plane.store.find_runs() == []

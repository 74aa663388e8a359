"""The reliability suite's world: the in-process control plane on real Table and Blob Storage (Azurite).

Helpers here state the invariants every scenario ends on: one run per accepted job, one backend
job per run, a complete history that never moved a run backwards, and no nodes left running.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.adapters.storage.blobs import BlobDataStore
from aztrain.adapters.storage.tables import TableControlStore
from aztrain.domain.layout import backend_job_name
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState, can_transition
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.settings import Settings
from functions.blob_queue import BLOB_EVENTS_QUEUE
from tests.apps import hosted_app
from tests.clock import Clock
from tests.integration.test_devhost import WEBHOOK, Response
from tests.integration.test_http_api import Api

pytestmark = pytest.mark.azurite


def manifest(name: str, *, nodes: int = 1, retrain: bool = False) -> bytes:
    text = (
        f"apiVersion: aztrain/v1\nkind: TrainingJob\nname: {name}\n"
        f"data: {{container: datasets, prefix: {name}/}}\ncompute: {{nodes: {nodes}}}\n"
    )
    return (text + ("retrain: {on_data_arrival: true, debounce: 0}\n" if retrain else "")).encode()


def drop_manifest(plane: ControlPlane, name: str, *, nodes: int = 1, retrain: bool = False) -> BlobEvent:
    """Upload a job's data and its manifest blob; the BlobCreated event Event Grid would send for it."""
    plane.data.write("datasets", f"{name}/part-0.csv", b"1,2\n")
    blob = f"manifests/{name}.yaml"
    plane.data.write("jobs", blob, manifest(name, nodes=nodes, retrain=retrain))
    return BlobEvent(id=f"evt-{name}", container="jobs", name=blob)


@pytest.fixture
def plane(
    azurite_settings: Settings, run_store_on_azurite: TableControlStore, data_store_on_azurite: BlobDataStore
) -> ControlPlane:
    """A control plane on Azurite with a scripted backend whose jobs go queued → running → completed."""
    return ControlPlane(
        settings=azurite_settings,
        store=run_store_on_azurite,
        data=data_store_on_azurite,
        backend=FakeComputeBackend(provision_polls=0),
        now=Clock(),
    )


@pytest.fixture(scope="package")
def stack(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`function_app` on the dev host (its real webhook and API) on Azurite, with the scripted backend; no timers."""
    state_dir = tmp_path_factory.mktemp("reliability-local")
    scripted = FakeComputeBackend(provision_polls=0)
    prefix = "rel" + uuid.uuid4().hex[:8]
    with hosted_app(azurite, table_prefix=prefix, state_dir=state_dir, backend=scripted) as (host, service):
        api = Api(host.url, host, service)
        api.openapi = api.call("GET", "/api/openapi.json").json()
        yield api


def blob_created(event: BlobEvent) -> dict[str, Any]:
    """The Event Grid schema of a BlobCreated event, as Event Grid writes it to the blob-events queue."""
    return {
        "id": event.id,
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/{event.container}/blobs/{event.name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-28T10:00:00.0000000Z",
        "data": {"api": "PutBlob", "eTag": event.etag, "blobType": "BlockBlob"},
        "dataVersion": "",
        "metadataVersion": "1",
    }


def run_status_changed(job_name: str, status: str) -> dict[str, Any]:
    """The Event Grid schema of an Azure ML RunStatusChanged event."""
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w",
        "subject": f"experiments/e/jobs/{job_name}",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "eventTime": "2026-11-28T10:00:00.0000000Z",
        "data": {"runId": job_name, "runStatus": status},
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def enqueue(stack: Api, *events: dict[str, Any] | bytes) -> None:
    """Events written to the blob-events queue as Event Grid writes them (base64 JSON, one a message),
    each as its own message; returns once the host has settled every one (handled or given up on)."""
    queue = QueueClient.from_connection_string(stack.service.settings.storage_connection_string, BLOB_EVENTS_QUEUE)
    for event in events:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        queue.send_message(base64.b64encode(body).decode())
    stack.host.drain(timeout=60)


def retried(stack: Api) -> list[str]:
    """Reasons of dead letters whose event failed attempt after attempt (input faults are decided at once)."""
    return [d.reason for d in stack.service.store.dead_letters() if "attempts" in d.reason]


def post_events(stack: Api, function: str, events: list[dict[str, Any]]) -> Response:
    """One Event Grid delivery (a batch) to the dev host's webhook."""
    headers = {"aeg-event-type": "Notification", "Content-Type": "application/json"}
    return stack.call("POST", f"{WEBHOOK}?functionName={function}", json.dumps(events).encode(), headers)


def backend_jobs(plane: ControlPlane, run: Run) -> list[str]:
    backend = plane.backend
    assert isinstance(backend, FakeComputeBackend)
    return [name for name, job in backend.jobs.items() if job.submission.run_id == run.id]


def settle(plane: ControlPlane, rounds: int = 10) -> None:
    """The reconciler's timer until no run is active (and once more, for the clusters), at most `rounds` times."""
    for _ in range(rounds):
        plane.reconcile()
        if not plane.store.find_runs(states=ACTIVE_STATES):
            plane.reconcile()
            return


def assert_converged(plane: ControlPlane, jobs: Iterable[str], *, state: RunState = RunState.COMPLETED) -> list[Run]:
    """Every job has exactly one run, in `state`, with one backend job and a forward-only, complete history."""
    runs = []
    for job in jobs:
        found = plane.store.find_runs(job=job)
        assert len(found) == 1, f"job {job}: {len(found)} runs"
        run = found[0]
        assert run.state is state, f"run {run.id} of {job} is {run.state}"
        assert backend_jobs(plane, run) == [backend_job_name(run.id, 1)]
        assert_history_forward_only(plane, run)
        runs.append(run)
    backend = plane.backend
    assert isinstance(backend, FakeComputeBackend)
    assert not any(backend.nodes.values()), f"nodes left running: {backend.nodes}"
    return runs


def assert_history_forward_only(plane: ControlPlane, run: Run) -> None:
    """History rows 1..n with no gap; applied moves form one chain the transition table allows, ending at the run."""
    history = plane.store.history(run.id)
    assert [t.seq for t in history] == list(range(1, len(history) + 1)), "history has a gap"
    applied = [t for t in history if t.applied]
    assert applied[0].from_state is None
    for before, after in itertools.pairwise(applied):
        assert after.from_state is before.to_state, f"history of {run.id} does not chain: {before} -> {after}"
        assert can_transition(before.to_state, after.to_state), f"{run.id} moved {before.to_state}->{after.to_state}"
        resubmitted = after.to_state is RunState.SUBMITTED and before.to_state is not RunState.PROVISIONING
        assert not resubmitted or after.cause == "preempted", f"{run.id} went back to SUBMITTED: {after}"
    assert applied[-1].to_state is run.state

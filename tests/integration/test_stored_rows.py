"""Rows written by an earlier version still load and run: manifests are read back through the model."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from azure.data.tables import TableServiceClient

from aztrain.adapters.memory import FakeComputeBackend, InMemoryDataStore
from aztrain.adapters.storage.tables import TableControlStore
from aztrain.domain.records import JobPhase, JobSubmission
from aztrain.domain.runs import Run, RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.settings import Settings
from aztrain.service.usecases.progress import submission_for
from tests.clock import Clock

#: A run's manifest as stored before `registry`, `retrain`, `compute.max_runtime`, `compute.vm_size`
#: and `trainer.args` existed: only the fields of the first release.
OLD_MANIFEST = {
    "apiVersion": "aztrain/v1",
    "kind": "TrainingJob",
    "name": "digits",
    "data": {"container": "datasets", "prefix": "digits/"},
    "trainer": {"entrypoint": "trainer.train"},
    "compute": {"profile": "gpu-small", "nodes": 1, "processes_per_node": 1, "priority": "low"},
}
RUN_ID = "8232054399990-0a0b0c"


def test_a_run_stored_before_newer_manifest_fields_existed_loads_and_is_resubmitted_after_preemption(
    azurite_settings: Settings, run_store_on_azurite: TableControlStore
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    backend = FakeComputeBackend(script=(JobPhase.RUNNING,))
    first_job = f"aztrain-{RUN_ID}"
    service = TableServiceClient.from_connection_string(azurite_settings.storage_connection_string)
    prefix = azurite_settings.table_prefix
    last = {"seq": 1, "from": None, "to": "RUNNING", "applied": True, "cause": "old", "at": at.isoformat()}
    service.get_table_client(prefix + "runhistory").create_entity(
        {
            "PartitionKey": RUN_ID,
            "RowKey": "000001",
            "Job": "digits",
            "From": "",
            "To": "RUNNING",
            "Cause": "old",
            "At": at,
            "Applied": True,
            "Detail": "",
        }
    )
    service.get_table_client(prefix + "runs").create_entity(
        {
            "PartitionKey": "digits",
            "RowKey": RUN_ID,
            "State": "RUNNING",
            "CreatedAt": at,
            "UpdatedAt": at,
            "Trigger": "http",
            "Cause": "old",
            "ManifestHash": "0" * 64,
            "Manifest": json.dumps(OLD_MANIFEST),
            "Source": "http",
            "Cluster": "fake-gpu-small",
            "BackendJobId": first_job,
            "SnapshotId": "snap-old",
            "Attempt": 1,
            "Error": "",
            "Metrics": "{}",
            "Outputs": "",
            "Seq": 1,
            "Last": json.dumps(last),
        }
    )
    plane = ControlPlane(
        settings=azurite_settings, store=run_store_on_azurite, data=InMemoryDataStore(), backend=backend, now=Clock()
    )

    run = plane.get_run(RUN_ID)
    assert run.manifest.compute.max_runtime == 2 * 3600  # today's default fills the gap
    assert run.manifest.retrain is None and run.manifest.registry.promote_if is None

    backend.submit(_submission_of(plane, run))  # the backend still runs attempt 1
    backend.preempt(first_job)
    resubmitted = plane.advance(RUN_ID)
    assert (resubmitted.state, resubmitted.attempt) == (RunState.SUBMITTED, 2)
    submission = backend.jobs[resubmitted.backend_job_id].submission
    assert submission.max_runtime_seconds == 2 * 3600 and submission.data_prefix == "digits/"


def _submission_of(plane: ControlPlane, run: Run) -> JobSubmission:
    spec = plane.backend.cluster_for(run.manifest.compute)
    return submission_for(run, spec, runs_container=plane.settings.runs_container, attempt=1)

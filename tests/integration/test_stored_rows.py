"""Rows written by an earlier version still load and run: manifests are read back through the model,
and "identical manifest" hashes them again, so a manifest identical to a stored one stays identical."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

import pytest
from azure.data.tables import TableClient, TableServiceClient
from pydantic import Field

from aztrain.adapters.memory import FakeComputeBackend, InMemoryDataStore
from aztrain.adapters.storage import tables
from aztrain.adapters.storage.tables import TableControlStore
from aztrain.domain import manifest
from aztrain.domain.manifest import JobManifest, TrainerSpec
from aztrain.domain.records import JobPhase, JobSubmission
from aztrain.domain.runs import Run, RunState
from aztrain.domain.teams import DEFAULT_TEAM
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
#: A manifest as stored before hashes ignored defaults (in the default team, which the service writes in).
BEFORE_THE_HASH = {**OLD_MANIFEST, "team": DEFAULT_TEAM}


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


def test_a_job_stored_with_an_earlier_hash_answers_an_identical_manifest_with_its_run(
    azurite_settings: Settings, run_store_on_azurite: TableControlStore
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    service = TableServiceClient.from_connection_string(azurite_settings.storage_connection_string)
    table = functools.partial(_table, service, azurite_settings.table_prefix)
    table("jobs").create_entity(
        {
            "PartitionKey": "digits",
            "RowKey": "spec",
            "Manifest": json.dumps(BEFORE_THE_HASH),
            "ManifestHash": "0" * 64,  # hashed another way, over fewer fields
            "UpdatedAt": at,
            "LastRunId": RUN_ID,
        }
    )
    table("runhistory").create_entity(
        {"PartitionKey": RUN_ID, "RowKey": "000001", "Job": "digits", "To": "COMPLETED", "At": at, "Applied": True}
    )
    table("runs").create_entity(
        {
            "PartitionKey": "digits",
            "RowKey": RUN_ID,
            "State": "COMPLETED",
            "CreatedAt": at,
            "UpdatedAt": at,
            "ManifestHash": "0" * 64,
            "Manifest": json.dumps(BEFORE_THE_HASH),
        }
    )
    plane = _plane(azurite_settings, run_store_on_azurite)

    again = plane.submit(json.dumps(BEFORE_THE_HASH), trigger="http", cause="again", source="http")

    assert (again.run and again.run.id, again.created) == (RUN_ID, False)
    assert again.reason.startswith("identical manifest")


def test_a_defaulted_field_the_schema_gains_changes_no_stored_hash_nor_the_identical_answer(
    azurite_settings: Settings, run_store_on_azurite: TableControlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = _plane(azurite_settings, run_store_on_azurite)
    first = plane.submit(json.dumps(OLD_MANIFEST), trigger="http", cause="first", source="http")
    assert first.run and first.created
    stored = run_store_on_azurite.get_job("digits")
    assert stored and stored.manifest_hash == first.run.manifest_hash

    class NewTrainer(TrainerSpec):
        warm_start: bool = False  # a field a later version adds, with a default

    class NewManifest(JobManifest):
        trainer: NewTrainer = Field(default_factory=NewTrainer)

    for module in (manifest, tables):  # the parser and the storage mapper read manifests through the model
        monkeypatch.setattr(module, "JobManifest", NewManifest)
    again = plane.submit(json.dumps(OLD_MANIFEST), trigger="http", cause="again", source="http")

    job = run_store_on_azurite.get_job("digits")
    assert job and isinstance(job.spec, NewManifest)
    assert job.manifest_hash == job.spec.content_hash == stored.manifest_hash  # stored and hashed again: the same
    assert plane.get_run(first.run.id).spec.content_hash == first.run.manifest_hash
    assert (again.run and again.run.id, again.created) == (first.run.id, False)
    assert again.reason.startswith("identical manifest")


def _table(service: TableServiceClient, prefix: str, name: str) -> TableClient:
    return service.get_table_client(prefix + name)


def _plane(settings: Settings, store: TableControlStore) -> ControlPlane:
    return ControlPlane(
        settings=settings, store=store, data=InMemoryDataStore(), backend=FakeComputeBackend(), now=Clock()
    )


def test_a_rejected_run_stored_before_problems_were_kept_shows_its_error_as_one_problem(
    azurite_settings: Settings, run_store_on_azurite: TableControlStore
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    service = TableServiceClient.from_connection_string(azurite_settings.storage_connection_string)
    table = functools.partial(_table, service, azurite_settings.table_prefix)
    error = "invalid manifest: compute.nodes: input should be greater than or equal to 1 (got 0)"
    table("runhistory").create_entity(
        {"PartitionKey": RUN_ID, "RowKey": "000001", "Job": "digits", "To": "REJECTED", "At": at, "Applied": True}
    )
    table("runs").create_entity(
        {
            "PartitionKey": "digits",
            "RowKey": RUN_ID,
            "State": "REJECTED",
            "CreatedAt": at,
            "UpdatedAt": at,
            "Error": error,
        }
    )
    plane = _plane(azurite_settings, run_store_on_azurite)

    shown = plane.queries.view(plane.queries.run(RUN_ID))

    assert [(p.field, p.message) for p in shown.problems] == [("(document)", error)]

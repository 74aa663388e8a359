"""A local job's supervisor honours SIGTERM promptly, even while storage it needs is gone."""

from __future__ import annotations

import os
from pathlib import Path

from aztrain.adapters.compute.local.backend import LocalBackend, job_processes, read_json
from aztrain.domain.records import ClusterSpec, JobSubmission
from aztrain.service.settings import AZURITE_CONNECTION_STRING, Settings
from devhost import azurite_connection_string
from tests.conftest import free_port_block
from tests.e2e.conftest import wait_for

#: What a user waits for `aztrain dev` to stop; a supervisor must be done well within it.
STOP_SECONDS = 10.0


def test_sigterm_ends_a_supervisor_retrying_unreachable_storage(tmp_path: Path) -> None:
    port = free_port_block(1)  # nothing listens there: every storage call fails and is retried
    storage = azurite_connection_string(AZURITE_CONNECTION_STRING, blob_port=port, queue_port=port, table_port=port)
    backend = LocalBackend(
        Settings(storage_connection_string=storage, local_state_dir=tmp_path),
        child_env={**os.environ, "AZTRAIN_STORAGE_CONNECTION_STRING": storage},
    )
    name = "aztrain-8200000000000-sigtrm"
    backend.submit(
        JobSubmission(
            name=name,
            run_id="8200000000000-sigtrm",
            job="stop-job",
            cluster=ClusterSpec(name="local-e2e", nodes=1, processes_per_node=1, vm_size="Local_CPU", priority="low"),
            entrypoint="trainer.train",
            args={},
            data_container="datasets",
            data_prefix="stop-job/",
            snapshot="_snapshots/0.json",
            output_container="runs",
            output_prefix=f"stop-job/{name}/",
            max_runtime_seconds=600,
            snapshot_id="0",
            manifest_hash="0" * 64,
        )
    )
    status_file = tmp_path / "jobs" / name / "status.json"
    try:
        # Preparing is written just before the snapshot is read from the unreachable storage.
        wait_for(lambda: read_json(status_file).get("status") == "Preparing", timeout=30, what="Preparing")
        backend.cancel(name)  # SIGTERM to the supervisor's process group
        wait_for(lambda: not job_processes(name), timeout=STOP_SECONDS, what="the supervisor to exit")
    finally:
        for proc in job_processes(name):  # only if the test failed: leave nothing behind
            proc.kill()
    status = read_json(status_file)
    assert status["status"] == "Canceled"
    assert "SIGTERM" in status["error"]

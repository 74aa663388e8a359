"""A local job's supervisor honours SIGTERM promptly, even while storage it needs is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from aztrain.adapters.local import JOB_ENV_MARKER, job_processes, read_json, write_json_atomic
from aztrain.records import ClusterSpec, JobSubmission
from aztrain.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT
from devhost import azurite_connection_string
from tests.conftest import free_port_block
from tests.e2e.conftest import wait_for

#: What a user waits for `aztrain dev` to stop; a supervisor must be done well within it.
STOP_SECONDS = 10.0


def test_sigterm_ends_a_supervisor_retrying_unreachable_storage(tmp_path: Path) -> None:
    name = "aztrain-8200000000000-sigtrm"
    folder = tmp_path / "jobs" / name
    folder.mkdir(parents=True)
    submission = JobSubmission(
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
    write_json_atomic(folder / "submission.json", asdict(submission))
    port = free_port_block(1)  # nothing listens there: every storage call fails and is retried
    storage = azurite_connection_string(AZURITE_CONNECTION_STRING, blob_port=port, queue_port=port, table_port=port)
    env = {**os.environ, "AZTRAIN_STORAGE_CONNECTION_STRING": storage, JOB_ENV_MARKER: name}
    with (folder / "supervisor.log").open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "aztrain.adapters.local_job", str(folder)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Preparing is written just before the snapshot is read from the unreachable storage.
        wait_for(lambda: read_json(folder / "status.json").get("status") == "Preparing", timeout=30, what="Preparing")
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=STOP_SECONDS)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
    status = json.loads((folder / "status.json").read_text())
    assert status["status"] == "Canceled"
    assert "SIGTERM" in status["error"]
    assert job_processes(name) == []

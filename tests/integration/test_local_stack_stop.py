"""Stopping `aztrain dev` (SIGTERM or Ctrl-C) ends all it started: Azurite, job supervisors, horovodrun, ranks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aztrain.adapters.compute.local.backend import JOB_ENV_MARKER
from aztrain.cli.client import Client
from aztrain.service.bootstrap import build_data_store
from aztrain.service.settings import AZURITE_CONNECTION_STRING, Settings
from devhost import azurite_connection_string
from tests.conftest import free_port_block
from tests.e2e.conftest import STARTUP_TIMEOUT, wait_for

pytestmark = [pytest.mark.azurite, pytest.mark.horovod]

STOP_SECONDS = 10.0
TRAINING_TIMEOUT = 240.0
MANIFEST = b"""
apiVersion: aztrain/v1
kind: TrainingJob
name: stop-job
data: {container: datasets, prefix: stop-job/}
trainer: {args: {epochs: 2000}}
compute: {profile: e2e, nodes: 1, processes_per_node: 2, max_runtime: 10m}
"""


def job_processes_of(local_state: Path) -> list[psutil.Process]:
    """Live processes carrying the job marker that belong to the stack with this local state dir."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if JOB_ENV_MARKER in env and env.get("AZTRAIN_LOCAL_STATE_DIR") == str(local_state) and alive(proc):
                found.append(proc)
    return found


def command_line(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_aztrain_dev_ends_every_process_of_the_stack(tmp_path: Path, stop_signal: signal.Signals) -> None:
    from trainer.data import export_digits

    state_dir, local_state = tmp_path / "stack", tmp_path / "stack" / "local"
    azurite_port, host_port = free_port_block(), free_port_block(1)
    env = {**os.environ, "AZTRAIN_LOCAL_PROVISION_SECONDS": "1", "AZTRAIN_LOCAL_MAX_SLOTS": "2"}
    env.pop("AZTRAIN_LOCAL_STATE_DIR", None)  # the stack's own, under its state dir
    command = [sys.executable, "-m", "aztrain.cli.main", "dev", "--port", str(host_port)]
    command += ["--azurite-port", str(azurite_port), "--state-dir", str(state_dir), "--timer-interval", "0.5"]
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    client = Client(f"http://127.0.0.1:{host_port}", timeout=30)

    def healthy() -> bool:
        assert process.poll() is None, f"aztrain dev exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        try:
            return bool(client.health().status == "ok")
        except Exception:
            return False

    try:
        wait_for(healthy, timeout=STARTUP_TIMEOUT, what="the dev host to report healthy")
        connection_string = azurite_connection_string(
            AZURITE_CONNECTION_STRING, blob_port=azurite_port, queue_port=azurite_port + 1, table_port=azurite_port + 2
        )
        data = build_data_store(Settings(storage_connection_string=connection_string))
        data.write("datasets", "stop-job/digits.npz", export_digits(tmp_path / "digits").read_bytes())
        run = client.submit(MANIFEST).run
        assert run is not None
        wait_for(lambda: client.run(run.id).state == "RUNNING", timeout=TRAINING_TIMEOUT, what="RUNNING")
        driver_log = local_state / "jobs" / f"aztrain-{run.id}" / "driver.log"
        wait_for(lambda: b"epoch 1/" in driver_log.read_bytes(), timeout=TRAINING_TIMEOUT, what="ranks training")

        stack = psutil.Process(process.pid)
        started = {stack, *stack.children(recursive=True), *job_processes_of(local_state)}
        assert any("azurite" in " ".join(command_line(p)) for p in started)
        assert sum(command_line(p)[1:3] == ["-m", "trainer.train"] for p in started) == 2  # both ranks
        process.send_signal(stop_signal)
        deadline = time.monotonic() + STOP_SECONDS

        def nothing_left() -> bool:
            return not [p for p in started if alive(p)] and not job_processes_of(local_state)

        wait_for(nothing_left, timeout=deadline - time.monotonic(), what="every process of the stack to end")
        assert process.wait(timeout=max(0.0, deadline - time.monotonic())) == 0
        assert "; nothing left running" in log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for proc in job_processes_of(local_state):  # only if the test failed: leave nothing behind
            with contextlib.suppress(psutil.Error):
                proc.kill()

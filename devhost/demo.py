"""`aztrain demo` (`make demo`): the whole loop on this machine, start to finish, unattended.

Starts an isolated local stack (its own Azurite ports and state folder), uploads
the digits data set, drops a manifest into the jobs container, follows the run
through its states over the HTTP API, prints the trained model's accuracy and
shows the cluster back at zero nodes, then stops everything it started.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from aztrain.api import models as api
from aztrain.cli.client import Client
from aztrain.cli.output import print_transition
from aztrain.service.settings import PROJECT_ROOT
from devhost.localstack import LocalStack

MANIFEST = PROJECT_ROOT / "examples" / "digits.yaml"
_ZERO_TIMEOUT_SECONDS = 60.0


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run_demo(*, port: int, azurite_port: int) -> int:
    from trainer.data import export_digits  # the trainer package owns the data format

    state_dir = PROJECT_ROOT / ".aztrain" / "demo"
    shutil.rmtree(state_dir, ignore_errors=True)  # a fresh stack every time: the demo is repeatable
    started = time.monotonic()
    _step(f"starting Azurite (127.0.0.1:{azurite_port}) and the Functions dev host (port {port})")
    with LocalStack(state_dir=state_dir, port=port, azurite_port=azurite_port, timer_interval=1.0) as stack:
        client = Client(stack.url)
        print(f"    health: {client.health().status}")

        _step("uploading scikit-learn's digits images to datasets/digits/")
        with tempfile.TemporaryDirectory() as tmp:
            export_digits(Path(tmp))
            count = stack.data.upload_folder(Path(tmp), "datasets", "digits/")
        print(f"    {count} blob(s) uploaded")

        manifest = MANIFEST.relative_to(PROJECT_ROOT)
        _step(f"dropping {manifest} into jobs/manifests/ (Event Grid → blob-events queue → on_blob_event)")
        stack.data.write("jobs", "manifests/digits.yaml", MANIFEST.read_bytes())
        run = _wait_for_run(client, job="digits-classifier")
        print(f"    run {run.short_id} created by event {run.cause}")

        _step("following the run (real horovodrun -np 2 on the local simulated cluster)")
        final = client.watch(run.id, on_change=print_transition, timeout=900)
        log = stack.data.read("runs", f"{final.job}/{final.id}/logs/driver.log").decode(errors="replace")
        for line in log.splitlines():
            if line.startswith("epoch") or "epoch " in line[:40]:
                print(f"    {line}")
        if final.state != "COMPLETED":
            print(f"\nrun ended {final.state}: {final.error}")
            return 1

        _step("result")
        accuracy = final.metrics.get("accuracy")
        print(f"    test accuracy: {accuracy:.4f}" if isinstance(accuracy, float) else f"    metrics: {final.metrics}")
        print(f"    model: runs/{final.job}/{final.id}/outputs/model.pt (aztrain download {final.short_id})")
        cluster = _wait_for_zero(client, final.cluster)
        print(
            f"    cluster {cluster.name}: {cluster.observed_nodes} nodes "
            f"(scaled to zero {cluster.seconds_to_zero or 0:.1f} s after the run ended)"
        )
        _step(f"done in {time.monotonic() - started:.0f} s; stopping the local stack")
    return 0


def _wait_for_run(client: Client, *, job: str, timeout: float = 60.0) -> api.RunView:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.runs(job=job)
        if runs:
            return runs[0]
        time.sleep(0.3)
    raise TimeoutError(f"no run of {job} appeared within {timeout:.0f} s: was the BlobCreated event delivered?")


def _wait_for_zero(client: Client, name: str) -> api.ClusterView:
    deadline = time.monotonic() + _ZERO_TIMEOUT_SECONDS
    while True:
        cluster = next(c for c in client.clusters() if c.name == name)
        if cluster.observed_nodes == 0 or time.monotonic() > deadline:
            return cluster
        time.sleep(0.5)

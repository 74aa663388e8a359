"""A user's own trainers from examples/ on the dev host: pushed as code snapshots, run like the built-in one.

The plain PyTorch example trains from a dropped manifest and again when new data arrives; the
Horovod example is submitted over HTTP by `aztrain submit` (which pushes its folder) and trains on
two processes. Both register a model with their metrics, and lineage names their code snapshot.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aztrain.service.settings import PROJECT_ROOT
from tests.e2e.conftest import Stack, wait_for
from tests.e2e.test_local_loop import TRAINING_TIMEOUT, runs_of, wait_terminal

EXAMPLES = PROJECT_ROOT / "examples"


def cli(stack: Stack, *args: str) -> Any:
    """`aztrain --url STACK ... --json` as a user runs it, with the stack's storage; its JSON answer."""
    env = {**os.environ, "AZTRAIN_STORAGE_CONNECTION_STRING": stack.storage}
    done = subprocess.run(
        [sys.executable, "-m", "aztrain.cli.main", "--url", stack.url, *args, "--json"],
        capture_output=True, text=True, timeout=TRAINING_TIMEOUT, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def rows(seed: int, per_class: int = 40) -> bytes:
    """A CSV of three separable classes: `x1,x2,x3,label`."""
    rng = np.random.default_rng(seed)
    lines = ["x1,x2,x3,label"] + [
        ",".join(f"{v:.3f}" for v in point) + f",{label}"
        for label in range(3)
        for point in rng.normal(label * 2.0, 0.5, (per_class, 3))
    ]
    return ("\n".join(lines) + "\n").encode()


def png(colour: tuple[int, int, int], rng: np.random.Generator) -> bytes:
    pixels = np.clip(np.array(colour) + rng.normal(0, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def manifest(job: str, *, code: str, args: str, processes: int, extra: str = "") -> str:
    return (
        f"apiVersion: aztrain/v1\nkind: TrainingJob\nname: {job}\n"
        f"data: {{container: datasets, prefix: {job}/}}\n"
        f"trainer: {{code: {code}, entrypoint: train.py, args: {args}}}\n"
        f"compute: {{profile: e2e, nodes: 1, processes_per_node: {processes}, max_runtime: 10m}}\n" + extra
    )


def test_a_users_pytorch_script_trains_from_a_dropped_manifest_and_again_on_new_data(stack: Stack):
    job = "csv-own"
    stack.data.write("datasets", f"{job}/batch-1/rows.csv", rows(seed=0))
    pushed = cli(stack, "code", "push", str(EXAMPLES / "pytorch-csv"))
    assert pushed["uploaded"] and {f["path"] for f in pushed["files"]} >= {"train.py", "job.yaml"}
    again = cli(stack, "code", "push", str(EXAMPLES / "pytorch-csv"))
    assert (again["id"], again["uploaded"]) == (pushed["id"], False)  # the same folder is not sent twice
    text = manifest(job, code=pushed["id"], args="{epochs: 40, lr: 0.05, hidden: 16}", processes=1)
    stack.data.write(
        "jobs", f"manifests/{job}.yaml", (text + "retrain: {on_data_arrival: true, debounce: 1s}\n").encode()
    )
    first = wait_for(lambda: runs_of(stack, job), timeout=30, what="the dropped manifest's run")[0]
    done = wait_terminal(stack, first.id)
    assert done.state == "COMPLETED", done.error
    assert done.metrics["samples"] == 120 and done.metrics["accuracy"] > 0.9
    log = stack.data.read("runs", f"{job}/{first.id}/logs/driver.log").decode()
    assert f"code snapshot {pushed['id']}" in log and "data: 120 rows" in log

    stack.data.write("datasets", f"{job}/batch-2/rows.csv", rows(seed=1))  # new data arrives
    retrain = wait_for(
        lambda: [r for r in runs_of(stack, job) if r.trigger == "data"], timeout=60, what="the retraining run"
    )[0]
    retrained = wait_terminal(stack, retrain.id)
    assert retrained.state == "COMPLETED", retrained.error
    assert retrained.metrics["samples"] == 240  # it read the new file beside the first
    versions = stack.client.request("GET", f"models/{job}")["versions"]
    assert [v["run_id"] for v in versions] == [first.id, retrain.id]
    assert versions[-1]["metrics"]["samples"] == 240
    lineage = stack.client.request("GET", f"models/{job}/versions/2")
    assert lineage["code"]["id"] == pushed["id"] and lineage["run"]["id"] == retrain.id
    assert lineage["data_read"] == [f"{job}/batch-1/rows.csv", f"{job}/batch-2/rows.csv"]
    assert all(blob["read"] for blob in lineage["snapshot"]["blobs"])


def test_a_users_horovod_script_submitted_over_http_trains_on_two_processes(stack: Stack, tmp_path: Path):
    job = "shapes-own"
    rng = np.random.default_rng(0)
    for name, colour in {"blue": (40, 40, 220), "red": (220, 40, 40)}.items():
        for i in range(12):
            stack.data.write("datasets", f"{job}/{name}/{i:02d}.png", png(colour, rng))
    path = tmp_path / "job.yaml"  # its code is the example's folder, which `aztrain submit` pushes
    path.write_text(manifest(job, code=str(EXAMPLES / "horovod-images"), args="{epochs: 6, lr: 0.01}", processes=2))
    submitted = cli(stack, "submit", str(path), "--wait", "--timeout", "4m")
    final = submitted["run"]
    assert final["trigger"] == "http" and final["state"] == "COMPLETED", final["error"]
    assert final["metrics"]["world_size"] == 2 and final["metrics"]["accuracy"] > 0.9  # two Horovod processes
    (version,) = stack.client.request("GET", f"models/{job}")["versions"]
    assert version["run_id"] == final["id"] and version["metrics"]["samples"] == 24
    lineage = stack.client.request("GET", f"models/{job}/versions/{version['version']}")
    assert lineage["code"]["id"].startswith("code-") and "train.py" in {f["path"] for f in lineage["code"]["files"]}
    assert len(lineage["data_read"]) == 24

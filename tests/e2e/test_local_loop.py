"""The whole loop on this machine: events and HTTP in, real Horovod and DDP runs, Table Storage state, zero nodes out.

Tests run in file order and share one stack; each uses its own job name.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aztrain.adapters.compute.local.backend import job_processes
from aztrain.api.models import ClusterView, RunDetail, RunView
from aztrain.cli.client import ApiError
from aztrain.service.settings import PROJECT_ROOT
from tests.e2e.conftest import Stack, wait_for

TRAINING_TIMEOUT = 240.0


def manifest(
    name: str, *, epochs: int = 3, retrain: bool = False, extra: str = "", distribution: str = "horovod"
) -> bytes:
    text = (
        f"""
apiVersion: aztrain/v1
kind: TrainingJob
name: {name}
data: {{container: datasets, prefix: {name}/}}
trainer: {{distribution: {distribution}, args: {{epochs: {epochs}}}}}
compute: {{profile: e2e, nodes: 1, processes_per_node: 2, max_runtime: 10m}}
"""
        + ("retrain: {on_data_arrival: true, debounce: 1s, cooldown: 0s}\n" if retrain else "")
        + extra
    )
    return text.encode()


@pytest.fixture(scope="module")
def digits_blob(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from trainer.data import export_digits

    return export_digits(tmp_path_factory.mktemp("digits")).read_bytes()


def upload_data(stack: Stack, job: str, blob: bytes) -> None:
    stack.data.write("datasets", f"{job}/digits.npz", blob)


def runs_of(stack: Stack, job: str) -> list[RunView]:
    return stack.client.runs(job=job)


def wait_terminal(stack: Stack, run_id: str) -> RunDetail:
    return wait_for(
        lambda: (r := stack.client.run(run_id)).terminal and r, timeout=TRAINING_TIMEOUT, what=f"run {run_id} to end"
    )


def wait_cluster_zero(stack: Stack, name: str) -> ClusterView:
    def at_zero() -> ClusterView | None:
        cluster = next((c for c in stack.client.clusters() if c.name == name), None)
        return cluster if cluster and cluster.observed_nodes == 0 and cluster.desired_nodes == 0 else None

    return wait_for(at_zero, timeout=30, what=f"cluster {name} at zero nodes")


def post_event(
    stack: Stack,
    events: list[dict[str, Any]] | dict[str, Any],
    *,
    kind: str | None = "Notification",
    function: str = "on_run_status_changed",
) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    headers = {"content-type": "application/json"}
    if kind:
        headers["aeg-event-type"] = kind
    request = urllib.request.Request(
        f"{stack.url}/runtime/webhooks/EventGrid?functionName={function}",
        data=json.dumps(events).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def enqueue(stack: Stack, event: dict[str, Any]) -> None:
    """Write `event` to the blob-events queue as Event Grid writes it (one message, base64 JSON)."""
    from azure.storage.queue import QueueClient

    from functions.blob_queue import BLOB_EVENTS_QUEUE

    queue = QueueClient.from_connection_string(stack.storage, BLOB_EVENTS_QUEUE)
    queue.send_message(base64.b64encode(json.dumps(event).encode()).decode())


def blob_created(container: str, name: str, event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "topic": "/subscriptions/0/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-22T10:00:00Z",
        "data": {
            "api": "PutBlob",
            "eTag": "0x1",
            "contentLength": 1,
            "blobType": "BlockBlob",
            "url": f"http://127.0.0.1/devstoreaccount1/{container}/{name}",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def test_manifest_drop_runs_horovod_to_completion_and_scales_to_zero(stack: Stack, digits_blob: bytes):
    upload_data(stack, "drop-job", digits_blob)
    stack.data.write("jobs", "manifests/drop-job.yaml", manifest("drop-job"))
    run = wait_for(lambda: runs_of(stack, "drop-job"), timeout=30, what="the BlobCreated event to create a run")[0]
    assert run.trigger == "manifest" and run.source == "jobs/manifests/drop-job.yaml"
    final = wait_terminal(stack, run.id)
    assert final.state == "COMPLETED", final.error
    assert final.metrics["world_size"] == 2  # real horovodrun -np 2
    assert final.metrics["accuracy"] > 0.8
    # The trainer was told which data snapshot and manifest it trained on, and recorded both.
    lineage = (final.metrics["data_snapshot"], final.metrics["manifest_hash"])
    assert lineage == (final.snapshot_id, final.manifest_hash) and final.snapshot_id

    history = stack.tables.history(run.id)  # straight from Table Storage
    applied = [t.to_state.value for t in history if t.applied]
    # The reconciler records what it sees when it polls: a short QUEUED (or RUNNING) phase can fall between two polls.
    assert applied[:3] == ["ACCEPTED", "PROVISIONING", "SUBMITTED"] and applied[-1] == "COMPLETED"
    assert [state for state in ("QUEUED", "RUNNING") if state in applied] == applied[3:-1]
    times = [t.at for t in history]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)

    log = stack.data.read("runs", f"drop-job/{run.id}/logs/driver.log").decode()
    assert "epoch 3/3" in log
    assert stack.data.read("runs", f"drop-job/{run.id}/outputs/model.pt")
    assert wait_cluster_zero(stack, final.cluster).seconds_to_zero is not None


def test_a_dropped_pytorch_manifest_trains_two_ddp_processes_to_a_registered_model(stack: Stack, digits_blob: bytes):
    upload_data(stack, "ddp-job", digits_blob)
    stack.data.write("jobs", "manifests/ddp-job.yaml", manifest("ddp-job", epochs=2, distribution="pytorch"))
    run = wait_for(lambda: runs_of(stack, "ddp-job"), timeout=30, what="the BlobCreated event to create a run")[0]
    final = wait_terminal(stack, run.id)
    assert final.state == "COMPLETED", final.error
    assert final.metrics["world_size"] == 2 and final.metrics["ranks_in_sync"] is True  # two DDP ranks, in step
    log = stack.data.read("runs", f"ddp-job/{run.id}/logs/driver.log").decode()
    assert "/torchrun --standalone --nnodes 1 --nproc-per-node 2" in log and "epoch 2/2" in log
    models = stack.client.request("GET", "models/ddp-job")["versions"]
    assert [m["run_id"] for m in models] == [run.id]


def test_http_submit_runs_to_completion_and_identical_resubmit_is_deduplicated(stack: Stack, digits_blob: bytes):
    upload_data(stack, "http-job", digits_blob)
    submitted = stack.client.submit(manifest("http-job"))
    assert submitted.created and submitted.run.trigger == "http"
    final = wait_terminal(stack, submitted.run.id)
    assert final.state == "COMPLETED", final.error

    again = stack.client.submit(manifest("http-job"))
    assert not again.created and again.run.id == final.id
    assert "force" in again.reason
    forced = stack.client.submit(manifest("http-job"), force=True)
    assert forced.created and forced.run.id != final.id
    stack.client.cancel(forced.run.id)
    assert wait_terminal(stack, forced.run.id).state == "CANCELED"


def test_cancel_of_a_running_run_leaves_no_process_and_zero_nodes(stack: Stack, digits_blob: bytes):
    upload_data(stack, "cancel-job", digits_blob)
    run = stack.client.submit(manifest("cancel-job", epochs=2000)).run
    log_name = f"cancel-job/{run.id}/logs/driver.log"

    def training() -> bool:
        try:
            return b"epoch 1/" in stack.data.read("runs", log_name)
        except Exception:
            return False

    wait_for(training, timeout=TRAINING_TIMEOUT, what="the trainer to finish its first epoch")
    assert stack.client.run(run.id).state == "RUNNING"
    assert job_processes(f"aztrain-{run.id}")  # the trainer really is running
    stack.client.cancel(run.id)
    final = wait_terminal(stack, run.id)
    assert final.state == "CANCELED"
    assert wait_for(lambda: not job_processes(f"aztrain-{run.id}"), timeout=30, what="no process of the job")
    wait_cluster_zero(stack, final.cluster)
    assert stack.client.cancel(run.id).state == "CANCELED"  # idempotent


def test_new_data_under_a_watched_prefix_starts_one_retraining_run(stack: Stack, digits_blob: bytes):
    upload_data(stack, "watch-job", digits_blob)
    first = stack.client.submit(manifest("watch-job", epochs=1, retrain=True)).run
    wait_terminal(stack, first.id)
    stack.data.write("datasets", "watch-job/more/digits-2.npz", digits_blob)
    stack.data.write("datasets", "elsewhere/unwatched.npz", digits_blob)
    retrain = wait_for(
        lambda: [r for r in runs_of(stack, "watch-job") if r.trigger == "data"], timeout=30, what="a retraining run"
    )
    assert len(retrain) == 1 and retrain[0].source.startswith("datasets/watch-job/more/digits-2.npz")
    retrained = wait_terminal(stack, retrain[0].id)
    assert retrained.state == "COMPLETED"
    # The retraining run trained on the upload beside the first file: twice the samples.
    assert stack.client.run(first.id).metrics["samples"] == 1797
    assert retrained.metrics["samples"] == 2 * 1797
    assert retrained.metrics["data_sources"] == {"digits.npz": 1797, "more/digits-2.npz": 1797}
    # Its own outputs and logs (written by now) were never recorded as new data.
    assert stack.client.request("GET", "jobs/watch-job/window")["reason"] == "no new data"
    assert len(runs_of(stack, "watch-job")) == 2
    models = stack.client.request("GET", "models/watch-job")["versions"]
    assert [m["run_id"] for m in models] == [first.id, retrain[0].id]
    lineage = stack.client.request("GET", f"models/watch-job/versions/{models[-1]['version']}")
    assert {b["name"]: b["read"] for b in lineage["snapshot"]["blobs"]} == {
        "watch-job/digits.npz": True,
        "watch-job/more/digits-2.npz": True,
    }
    assert lineage["data_read"] == ["watch-job/digits.npz", "watch-job/more/digits-2.npz"]


def test_the_same_event_delivered_twice_creates_one_run(stack: Stack, digits_blob: bytes):
    job = "dup-job"
    upload_data(stack, job, digits_blob)
    stack.data.write("jobs", f"manifests/{job}.yaml", manifest(job, epochs=1))
    event = blob_created("jobs", f"manifests/{job}.yaml", "dup-event-1")
    enqueue(stack, event)
    enqueue(stack, event)
    # The dev host also delivers its own BlobCreated (another id): identical content, so still one run.
    (run,) = wait_for(lambda: runs_of(stack, job), timeout=30, what="the run")
    wait_terminal(stack, run.id)
    assert [r.id for r in runs_of(stack, job)] == [run.id]


def test_malformed_manifest_is_rejected_visibly_and_never_retried(stack: Stack):
    stack.data.write(
        "jobs",
        "manifests/broken-job.yaml",
        b"apiVersion: aztrain/v1\nkind: TrainingJob\nname: broken-job\n"
        b"data: {container: datasets}\ncompute: {gpus: 8}\n",
    )
    rejected = wait_for(
        lambda: stack.client.runs(job="broken-job", state="REJECTED"),
        timeout=30,
        what="the rejection to show in GET /api/runs",
    )
    assert "compute.gpus: unknown field" in rejected[0].error
    enqueue(stack, blob_created("jobs", "manifests/broken-job.yaml", "broken-again"))
    again = wait_for(
        lambda: [r for r in stack.client.runs(job="broken-job", state="REJECTED") if r.cause == "broken-again"],
        timeout=30,
        what="the redelivered manifest's rejection",
    )
    assert len(again) == 1  # rejected at once, on its first attempt: a bad manifest is not worth a retry
    out = subprocess.run(
        [sys.executable, "-m", "aztrain.cli.main", "--url", stack.url, "runs", "--state", "REJECTED"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "broken-job" in out and "compute.gpus: unknown field" in out


def test_webhook_contract_status_codes(stack: Stack):
    validation = [
        {
            "id": "v1",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "subject": "",
            "data": {"validationCode": "code-123"},
            "eventTime": "2026-11-22T10:00:00Z",
            "dataVersion": "1",
        }
    ]
    status, body = post_event(stack, validation, kind="SubscriptionValidation")
    assert (status, json.loads(body)) == (200, {"validationResponse": "code-123"})
    status_news = {"id": "contract-1", "eventType": "Microsoft.MachineLearningServices.RunStatusChanged"}
    news = {**status_news, "subject": "x", "data": {"runId": "elsewhere", "runStatus": "Running"}}
    news |= {"eventTime": "2026-11-22T10:00:00Z", "dataVersion": "2"}
    assert post_event(stack, [news], function="on_run_status_changed")[0] == 202
    assert post_event(stack, [news], kind=None, function="on_run_status_changed")[0] == 400
    assert post_event(stack, [news], function="no_such_function")[0] == 404


def test_importing_function_app_does_not_import_azure_ml():
    code = "import sys, function_app; print('azure.ai.ml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_cli_validates_manifests_offline(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(manifest("cli-job").replace(b"nodes: 1", b"nodes: 0"))
    result = subprocess.run(
        [sys.executable, "-m", "aztrain.cli.main", "validate", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "compute.nodes: input should be greater than or equal to 1" in result.stderr
    good = subprocess.run(
        [sys.executable, "-m", "aztrain.cli.main", "validate", str(PROJECT_ROOT / "examples" / "digits.yaml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and "valid" in good.stdout


def test_a_job_with_no_data_fails_before_provisioning(stack: Stack):
    run = stack.client.submit(manifest("no-data-job")).run  # nothing uploaded under no-data-job/
    final = wait_terminal(stack, run.id)
    assert final.state == "FAILED" and not final.cluster
    assert "datasets/no-data-job/ holds no blobs" in final.error
    assert [row.to for row in stack.client.run(run.id).history] == ["ACCEPTED", "FAILED"]


def test_a_trainer_failure_ends_the_run_failed_with_the_trainers_reason(stack: Stack):
    upload_data(stack, "bad-data-job", b"this is not an npz file")
    run = stack.client.submit(manifest("bad-data-job")).run
    final = wait_terminal(stack, run.id)
    assert final.state == "FAILED"
    assert "trainer exited with code" in final.error and "digits.npz" in final.error
    wait_cluster_zero(stack, final.cluster)


def test_ill_typed_trainer_arguments_are_rejected_before_any_compute(stack: Stack):
    with pytest.raises(ApiError) as err:
        stack.client.submit(manifest("typo-job").replace(b"epochs: 3", b"epochs: three"))
    assert err.value.status == 422  # well-formed, but not a valid manifest
    assert "trainer.args.epochs: expected int, got str 'three'" in err.value.body["error"]
    assert err.value.body["run"]["state"] == "REJECTED" and not err.value.body["run"]["cluster"]


def test_runs_beyond_the_local_clusters_nodes_wait_in_queued_then_run(stack: Stack, digits_blob: bytes):
    """The stack's simulated clusters have 2 nodes (AZTRAIN_LOCAL_CLUSTER_NODES); each run here takes one."""
    names = ["queue-a", "queue-b", "queue-c"]
    for name in names:
        upload_data(stack, name, digits_blob)
    ids = [
        stack.client.submit(manifest(name, epochs=2000).replace(b"profile: e2e", b"profile: queue")).run.id
        for name in names
    ]

    def by_state() -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for run_id in ids:
            grouped.setdefault(stack.client.run(run_id).state, []).append(run_id)
        return grouped

    two_running = wait_for(
        lambda: len((g := by_state()).get("RUNNING", [])) == 2 and g, timeout=TRAINING_TIMEOUT, what="two runs training"
    )
    assert two_running.get("QUEUED", []) != [] and len(two_running["QUEUED"]) == 1, two_running
    waiting = two_running["QUEUED"][0]
    assert len(job_processes(f"aztrain-{waiting}")) == 0  # queued means nothing of it runs yet
    stack.client.cancel(two_running["RUNNING"][0])
    wait_for(
        lambda: stack.client.run(waiting).state == "RUNNING",
        timeout=TRAINING_TIMEOUT,
        what="the queued run to start",
    )
    for run_id in ids:
        stack.client.request("POST", f"runs/{run_id}/cancel")
    for run_id in ids:
        assert wait_terminal(stack, run_id).state == "CANCELED"


def test_a_run_over_the_simulated_quota_waits_with_the_reason_and_starts_when_the_earlier_run_ends(
    stack: Stack, digits_blob: bytes
):
    """The stack's simulated quota holds 8 T4 vCPUs (AZTRAIN_LOCAL_QUOTA): one run of two serverless-t4 nodes."""

    def serverless(name: str) -> bytes:
        upload_data(stack, name, digits_blob)
        text = manifest(name, epochs=2000)
        return text.replace(b"profile: e2e, nodes: 1, processes_per_node: 2", b"profile: serverless-t4, nodes: 2")

    first = stack.client.submit(serverless("quota-first")).run.id
    wait_for(lambda: stack.client.run(first).state == "RUNNING", timeout=TRAINING_TIMEOUT, what="the first run")
    second = stack.client.submit(serverless("quota-second")).run.id
    waiting = wait_for(
        lambda: (run := stack.client.run(second)).waiting_reason and run,
        timeout=TRAINING_TIMEOUT,
        what="the second run to wait for quota",
    )
    assert waiting.state == "QUEUED" and not waiting.backend_job_id and not waiting.cluster
    assert waiting.waiting_reason == "needs 8 vCPUs of standardNCASv3_T4Family; 0 of 8 free"
    assert not job_processes(f"aztrain-{second}")  # nothing of it runs, nothing is provisioned
    stack.client.cancel(first)
    wait_for(
        lambda: stack.client.run(second).state == "RUNNING",
        timeout=TRAINING_TIMEOUT,
        what="the waiting run to start once the first run's nodes are released",
    )
    assert stack.client.run(second).waiting_reason is None
    stack.client.cancel(second)
    assert wait_terminal(stack, second).state == "CANCELED"

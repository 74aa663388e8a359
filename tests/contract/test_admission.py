"""Admission: a run that may not take nodes yet waits in QUEUED with its reason, and moves on when admitted.

Run twice, on the in-memory fakes and on real Table and Blob Storage (Azurite), with the scripted
backend's quota (`FakeComputeBackend.vcpu_quota`: 4 vCPUs a node).
"""

import pytest

from aztrain.domain.runs import Run, RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.usecases import admission
from aztrain.service.views import run_view
from tests.contract.conftest import drive


def manifest(name: str, *, nodes: int = 2, profile: str = "gpu-small") -> bytes:
    return f"""
apiVersion: aztrain/v1
kind: TrainingJob
name: {name}
data: {{container: datasets, prefix: digits/}}
compute: {{profile: {profile}, nodes: {nodes}, processes_per_node: 1}}
""".encode()


def submitted(plane: ControlPlane, name: str, **compute: object) -> Run:
    run = plane.submit(manifest(name, **compute), trigger="http", cause=name, source="http").run  # type: ignore[arg-type]
    assert run is not None
    return run


def states(plane: ControlPlane, run: Run) -> list[str]:
    return [t.to_state.value for t in plane.store.history(run.id) if t.applied]


@pytest.mark.parametrize("profile", ["gpu-small", "serverless-t4"])
def test_a_run_over_the_free_quota_waits_with_the_reason_and_starts_when_the_earlier_run_ends(plane, profile):
    plane.backend.vcpu_quota = 8  # two nodes of 4 vCPUs
    first = submitted(plane, "first", profile=profile)
    plane.reconcile()
    second = submitted(plane, "second", profile=profile)
    plane.reconcile()
    waiting = plane.get_run(second.id)
    assert waiting.state is RunState.QUEUED and not waiting.backend_job_id
    assert waiting.waiting_reason == "needs 8 vCPUs of fakeGPUFamily; 0 of 8 free"
    assert run_view(waiting, runs_container="runs").waiting_reason == waiting.waiting_reason
    drive(plane, 8)
    assert plane.get_run(first.id).state is RunState.COMPLETED
    done = plane.get_run(second.id)
    assert done.state is RunState.COMPLETED and done.waiting_reason is None
    assert states(plane, done) == [
        "ACCEPTED", "QUEUED", "PROVISIONING", "SUBMITTED", "QUEUED", "RUNNING", "COMPLETED"
    ]  # fmt: skip
    history = plane.store.history(done.id)
    assert "waiting: needs 8 vCPUs of fakeGPUFamily" in history[1].detail and history[1].cause == "admission"


def test_a_run_that_fits_beside_another_is_admitted_at_once(plane):
    plane.backend.vcpu_quota = 16
    first, second = submitted(plane, "first"), submitted(plane, "second")
    plane.reconcile()
    assert [plane.get_run(r.id).waiting_reason for r in (first, second)] == [None, None]
    assert "QUEUED" not in states(plane, plane.get_run(second.id))[:2]


def test_a_run_the_whole_quota_cannot_hold_is_refused_at_submit_naming_need_and_quota(plane):
    plane.backend.vcpu_quota = 8
    result = plane.submit(manifest("too-big", nodes=3), trigger="http", cause="big", source="http")
    assert result.run is not None and result.run.state is RunState.REJECTED
    assert "needs 12 vCPUs of fakeGPUFamily" in result.run.error and "allows 8 in all" in result.run.error


def test_a_waiting_run_is_canceled_without_a_backend_job(plane):
    plane.backend.vcpu_quota = 8
    submitted(plane, "first")
    plane.reconcile()
    second = submitted(plane, "second")
    plane.reconcile()
    assert plane.get_run(second.id).awaiting_admission
    canceled = plane.cancel(second.id, cause="user")
    assert canceled.state is RunState.CANCELED and not canceled.backend_job_id and canceled.waiting_reason is None


def test_the_first_gate_with_a_reason_holds_the_run_until_every_gate_admits(plane, monkeypatch):
    closed = {"team": "team ml has 2 of 2 GPUs in use"}
    monkeypatch.setattr(admission, "GATES", [lambda ctx, run, active: closed.get("team"), *admission.GATES])
    run = submitted(plane, "gated")
    drive(plane, 2)
    assert plane.get_run(run.id).waiting_reason == "team ml has 2 of 2 GPUs in use"
    closed["team"] = "team ml has 1 of 2 GPUs in use, 1 asked for by an older run"
    plane.reconcile()
    assert plane.get_run(run.id).waiting_reason == closed["team"]  # a changed reason is shown
    closed.clear()
    drive(plane, 6)
    assert plane.get_run(run.id).state is RunState.COMPLETED

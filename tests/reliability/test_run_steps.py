"""An HTTP submit's first steps through the `run-steps` queue, on the dev host and Azurite, with no reconciler.

The `stack` host runs no timers: a run that moves past ACCEPTED was moved by its queued hint.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from aztrain.domain.runs import RunState
from aztrain.service.facade import RUN_STEPS_QUEUE
from functions.blob_queue import MAX_DEQUEUE_COUNT
from functions.run_steps import FUNCTION
from tests.integration.test_devhost import wait_for
from tests.integration.test_http_api import Api
from tests.reliability.conftest import assert_history_forward_only, backend_jobs, manifest, settle


def post(stack: Api, job: str) -> str:
    """Submit a job (its data uploaded first) over HTTP; the new run's id."""
    stack.service.data.write("datasets", f"{job}/part-0.csv", b"1,2\n")
    reply = stack.call("POST", "/api/jobs", manifest(job), {"Content-Type": "application/yaml"})
    assert reply.status == 202, reply.body
    return str(reply.json()["run"]["id"])


def hint(stack: Api, *run_ids: str) -> None:
    """Hints written to the run-steps queue as the service writes them; returns once the host settled them."""
    queue = QueueClient.from_connection_string(stack.service.settings.storage_connection_string, RUN_STEPS_QUEUE)
    for run_id in run_ids:
        queue.send_message(base64.b64encode(run_id.encode()).decode())
    stack.host.drain(timeout=60)


def dead_letter_of(stack: Api, run_id: str) -> Any:
    return next((d for d in stack.service.store.dead_letters() if d.function == FUNCTION and d.subject == run_id), None)


def test_a_posted_run_takes_its_first_steps_without_a_reconciler_pass(stack: Api) -> None:
    run_id = post(stack, f"steps-{uuid.uuid4().hex[:6]}")
    wait_for(lambda: stack.service.get_run(run_id).state is not RunState.ACCEPTED, what="the run past ACCEPTED")
    stack.host.drain(timeout=60)
    run = stack.service.get_run(run_id)
    assert run.state is RunState.SUBMITTED
    assert len(backend_jobs(stack.service, run)) == 1
    assert dead_letter_of(stack, run_id) is None


def test_hints_for_a_run_already_past_its_steps_change_nothing(stack: Api) -> None:
    run_id = post(stack, f"again-{uuid.uuid4().hex[:6]}")
    stack.host.drain(timeout=60)
    settle(stack.service)  # the run finishes
    finished = stack.service.get_run(run_id)
    history = stack.service.store.history(run_id)
    hint(stack, run_id, run_id)
    assert stack.service.get_run(run_id).state is finished.state is RunState.COMPLETED
    assert stack.service.store.history(run_id) == history
    assert len(backend_jobs(stack.service, finished)) == 1
    assert_history_forward_only(stack.service, finished)


def test_a_submit_whose_hint_cannot_be_queued_still_succeeds_and_the_reconciler_takes_the_step(
    stack: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = stack.service.ctx.steps
    assert steps is not None

    def refused(run_id: str) -> None:
        raise ConnectionError("queue unavailable")

    monkeypatch.setattr(steps, "request", refused)
    run_id = post(stack, f"unqueued-{uuid.uuid4().hex[:6]}")
    stack.host.drain(timeout=60)
    assert stack.service.get_run(run_id).state is RunState.ACCEPTED
    stack.service.reconcile()
    assert stack.service.get_run(run_id).state is not RunState.ACCEPTED


def test_a_hint_failing_every_attempt_is_a_dead_letter_and_its_run_is_left_to_the_reconciler(
    stack: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = stack.service
    job = f"cursed-{uuid.uuid4().hex[:6]}"
    plane.data.write("datasets", f"{job}/part-0.csv", b"1,2\n")
    run = plane.submit(manifest(job), trigger="http", cause="http:cursed", source="http").run  # no hint queued
    assert run is not None
    take = plane.take_steps

    def failing(run_id: str) -> Any:
        if run_id == run.id:
            raise ConnectionError("the backend is unreachable")
        return take(run_id)

    monkeypatch.setattr(plane, "take_steps", failing)
    hint(stack, run.id)
    letter = dead_letter_of(stack, run.id)
    assert letter is not None
    assert f"failed {MAX_DEQUEUE_COUNT} of {MAX_DEQUEUE_COUNT} attempts" in letter.reason
    assert "ConnectionError" in letter.reason
    assert plane.get_run(run.id).state is RunState.ACCEPTED
    monkeypatch.undo()
    plane.reconcile()
    assert plane.get_run(run.id).state is not RunState.ACCEPTED


def test_a_hint_naming_no_run_is_a_dead_letter_at_once(stack: Api) -> None:
    unknown = "not a run id"
    hint(stack, unknown)
    letter = dead_letter_of(stack, unknown)
    assert letter is not None and letter.reason == "message does not name a run"

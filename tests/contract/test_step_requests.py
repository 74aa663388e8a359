"""`StepRequests`, in memory and on Azurite's real queue service: each hint is one message naming its run."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from azure.storage.queue import QueueClient

from aztrain.adapters.memory import RecordingStepRequests
from aztrain.adapters.storage.queues import QueueStepRequests
from aztrain.domain.runs import RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.ports import StepRequests
from tests.contract.conftest import MANIFEST


@dataclass
class Queue:
    """An adapter, what its queue holds (as the trigger reads it: base64 decoded), and one whose queue is down."""

    steps: StepRequests
    received: Callable[[], list[str]]
    down: StepRequests


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.azurite)])
def queue(request: pytest.FixtureRequest) -> Queue:
    if request.param == "memory":
        steps, down = RecordingStepRequests(), RecordingStepRequests()
        down.failing = True
        return Queue(steps, lambda: list(steps.requested), down)
    azurite: str = request.getfixturevalue("azurite")
    name = f"steps{uuid.uuid4().hex[:10]}"
    client = QueueClient.from_connection_string(azurite, name)
    client.create_queue()

    def received() -> list[str]:
        messages = client.receive_messages(max_messages=32)
        return [base64.b64decode(m.content).decode() for m in messages]

    missing = QueueClient.from_connection_string(azurite, f"missing{uuid.uuid4().hex[:10]}", retry_total=0)
    return Queue(QueueStepRequests(client), received, QueueStepRequests(missing))


def test_each_request_is_one_message_naming_its_run(queue: Queue) -> None:
    queue.steps.request("run-a")
    queue.steps.request("run-b")
    assert sorted(queue.received()) == ["run-a", "run-b"]


def test_a_queue_that_refuses_raises(queue: Queue) -> None:
    with pytest.raises(Exception):  # noqa: B017 (each adapter raises its own kind)
        queue.down.request("run-a")


def test_a_hint_that_cannot_be_queued_leaves_the_run_to_its_next_step_taker(plane: ControlPlane) -> None:
    steps = RecordingStepRequests()
    plane.ctx = replace(plane.ctx, steps=steps)
    first = plane.submit(MANIFEST, trigger="http", cause="http:1", source="http").run
    assert first is not None
    plane.request_steps(first)
    assert steps.requested == [first.id]
    steps.failing = True
    second = plane.submit(MANIFEST, trigger="http", cause="http:2", source="http", force=True).run
    assert second is not None
    plane.request_steps(second)  # logged, not raised: the submit stands
    assert plane.get_run(second.id).state is RunState.ACCEPTED
    assert plane.take_steps(second.id).state is RunState.SUBMITTED

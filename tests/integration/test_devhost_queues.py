"""The dev host's queue triggers on Azurite's queue service; blob events written to a queue as Event Grid does."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueServiceClient

from devhost import DevHost, Subscription
from devhost.blob_events import blob_subject
from devhost.queue_triggers import QueueSettings, parse_duration

pytestmark = pytest.mark.azurite

#: Retried at once (no visibility timeout) and given up on after three attempts.
SETTINGS = QueueSettings(batch_size=4, new_batch_threshold=2, max_dequeue_count=3, max_polling_interval=0.5)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


@dataclass
class World:
    host: DevHost
    blobs: ContainerClient
    queues: QueueServiceClient
    queue: str
    seen: dict[str, list[func.QueueMessage]]


@pytest.fixture
def world(azurite: str, request: pytest.FixtureRequest) -> Iterator[World]:
    suffix = f"{abs(hash(request.node.nodeid)) % 10**8}"
    queue, container = f"events{suffix}", f"drops{suffix}"
    seen: dict[str, list[func.QueueMessage]] = {}
    lock = threading.Lock()
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    def record(function: str, message: func.QueueMessage) -> dict[str, Any]:
        with lock:
            seen.setdefault(function, []).append(message)
        return json.loads(message.get_body())  # type: ignore[no-any-return]

    @app.queue_trigger(arg_name="message", queue_name=queue, connection="AzureWebJobsStorage")
    def on_event(message: func.QueueMessage) -> None:
        if "poison" in record("on_event", message)["subject"]:
            raise RuntimeError("this one always fails")

    @app.queue_trigger(arg_name="message", queue_name=f"{queue}-poison", connection="AzureWebJobsStorage")
    def on_poison(message: func.QueueMessage) -> None:
        record("on_poison", message)

    blobs = BlobServiceClient.from_connection_string(azurite)
    blobs.create_container(container)
    subscription = Subscription(name="drops", function_name="", container=container, queue_name=queue)
    host = DevHost(
        app,
        connection_string=azurite,
        subscriptions=[subscription],
        port=0,
        timer_interval=None,
        blob_poll_interval=0.1,
        queue_settings=SETTINGS,
        queue_lease=1.0,
    )
    try:
        queues = QueueServiceClient.from_connection_string(azurite)
        yield World(host, blobs.get_container_client(container), queues, queue, seen)
    finally:
        host.stop()


def test_an_upload_reaches_the_queue_trigger_as_event_grid_writes_it(world: World) -> None:
    world.host.start()
    world.blobs.upload_blob("incoming/a.csv", b"1")
    (message,) = wait_for(lambda: world.seen.get("on_event"))
    event = json.loads(message.get_body())
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert event["subject"].endswith("/blobs/incoming/a.csv")
    assert message.dequeue_count == 1
    world.host.drain()
    assert not world.seen.get("on_poison")


def test_a_failing_message_is_retried_then_poisoned_without_holding_the_others(world: World) -> None:
    world.host.start()
    container = world.blobs
    container.upload_blob("poison.csv", b"1")
    for n in range(5):
        container.upload_blob(f"ok-{n}.csv", b"1")
    (poisoned,) = wait_for(lambda: world.seen.get("on_poison"))
    world.host.drain()
    attempts = [m.dequeue_count for m in world.seen["on_event"] if "poison" in json.loads(m.get_body())["subject"]]
    assert attempts == [1, 2, 3]
    assert json.loads(poisoned.get_body())["subject"].endswith("/poison.csv")
    ok = {json.loads(m.get_body())["subject"].rsplit("/", 1)[1] for m in world.seen["on_event"]} - {"poison.csv"}
    assert ok == {f"ok-{n}.csv" for n in range(5)}


def test_a_message_taken_by_a_host_that_died_comes_back(world: World) -> None:
    """A host that received a message and crashed before deleting it: the message reappears when its lease lapses."""
    queue = world.queues.get_queue_client(world.queue)
    queue.create_queue()
    event = {"id": "e-1", "eventType": "Microsoft.Storage.BlobCreated", "subject": blob_subject("x", "lost.csv")}
    queue.send_message(base64.b64encode(json.dumps(event).encode()).decode())
    (taken,) = queue.receive_messages(visibility_timeout=1, max_messages=1)  # ... and never deleted
    assert taken.dequeue_count == 1
    world.host.start()
    (again,) = wait_for(lambda: world.seen.get("on_event"))
    assert json.loads(again.get_body())["id"] == "e-1"
    assert again.dequeue_count == 2


def test_host_json_settings_are_read_as_the_extension_reads_them(tmp_path: Any) -> None:
    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "queues": {
                        "batchSize": 32,
                        "maxDequeueCount": 2,
                        "visibilityTimeout": "00:00:05",
                        "maxPollingInterval": "00:00:02",
                    }
                },
            }
        )
    )
    settings = QueueSettings.from_host_json(path)
    assert settings == QueueSettings(
        batch_size=32, new_batch_threshold=16, max_dequeue_count=2, visibility_timeout=5.0, max_polling_interval=2.0
    )
    assert parse_duration("1.00:00:01.5") == 86401.5
    with pytest.raises(ValueError, match="hh:mm:ss"):
        parse_duration("soon")


def test_a_subscription_to_a_queue_no_function_reads_is_refused() -> None:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="message", queue_name="read", connection="AzureWebJobsStorage")
    def reader(message: func.QueueMessage) -> None: ...

    with pytest.raises(ValueError, match="no queue function of the app reads"):
        DevHost(app, connection_string="", subscriptions=[Subscription("s", "", "c", queue_name="unread")])

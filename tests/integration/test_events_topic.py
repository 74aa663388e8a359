"""Outbound events end to end: the Event Grid SDK publishes to the local topic, which pushes to a webhook subscriber.

The control plane runs on Table and Blob Storage (Azurite) with the scripted backend; the publisher
is azure-eventgrid's `EventGridPublisherClient` with a key, as locally; the subscriber is a real
HTTP server that answers Event Grid's validation handshake.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aztrain.adapters.events.eventgrid import EventGridSink
from aztrain.adapters.memory import FakeComputeBackend
from aztrain.cli.main import main
from aztrain.domain.runs import RunState
from aztrain.service.facade import BlobEvent, ControlPlane
from devhost.topic import LocalTopic, Subscriber, problems
from tests.clock import Clock
from tests.contract.conftest import MANIFEST, SEED_BLOB, deliver, drive
from tests.contract.test_outbox import COMPLETED_SEQUENCE


@dataclass
class Webhook:
    """A subscriber endpoint: answers the handshake, records each CloudEvent, fails the first `fail_first` posts."""

    url: str = ""
    fail_first: int = 0
    handshakes: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)


def _serve(webhook: Webhook) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_OPTIONS(self) -> None:
            webhook.handshakes += 1
            self.send_response(200)
            self.send_header("WebHook-Allowed-Origin", self.headers["WebHook-Request-Origin"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if webhook.fail_first > 0:
                webhook.fail_first -= 1
                status = 503
            else:
                webhook.received.append(json.loads(body))
                webhook.content_types.add(self.headers["Content-Type"])
                status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(fail_first=1)  # the first push is refused: the topic retries it
    server = _serve(hook)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def topic(webhook: Webhook) -> Iterator[LocalTopic]:
    local = LocalTopic(key="test-key", subscribers=[Subscriber("test", webhook.url)], first_backoff=0.05)
    local.start()
    yield local
    local.close()


@pytest.fixture
def plane(topic: LocalTopic, azurite_settings, run_store_on_azurite, data_store_on_azurite) -> ControlPlane:
    data_store_on_azurite.write("datasets", SEED_BLOB, b"seed")
    data_store_on_azurite.write("jobs", "manifests/digits.yaml", MANIFEST)
    return ControlPlane(
        settings=azurite_settings,
        store=run_store_on_azurite,
        data=data_store_on_azurite,
        backend=FakeComputeBackend(),
        now=Clock(),
        events=EventGridSink(topic.endpoint, key=topic.key),
    )


def _complete(plane: ControlPlane, event_id: str) -> str:
    (run,) = deliver(plane, BlobEvent(id=event_id, container="jobs", name="manifests/digits.yaml"))
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b'{"accuracy": 0.97}')
    drive(plane)
    assert plane.get_run(run.id).state is RunState.COMPLETED
    return run.id


def test_a_completed_run_reaches_a_webhook_subscriber_as_the_documented_cloudevents(plane, topic, webhook):
    run_id = _complete(plane, "blob-event-1")
    assert topic.wait_delivered(timeout=30)
    events = webhook.received
    assert [e["type"] for e in events] == COMPLETED_SEQUENCE
    assert all(problems(e) == [] and e["specversion"] == "1.0" for e in events)
    assert webhook.handshakes == 1 and webhook.content_types == {"application/cloudevents+json; charset=utf-8"}
    run_events = [e for e in events if e["type"].startswith("aztrain.run.")]
    assert [e["id"] for e in run_events] == [f"{run_id}:{seq}" for seq in range(1, 7)]
    assert {e["correlationid"] for e in events[:-1]} == {"blob-event-1"}
    assert run_events[0]["causationid"] == "blob-event-1"
    assert run_events[-1]["data"]["metrics"] == {"accuracy": 0.97}


@pytest.mark.parametrize("outage", ["500s", "down"])
def test_events_wait_out_a_failing_topic_and_are_delivered_once_when_it_recovers(plane, topic, webhook, outage):
    if outage == "500s":
        topic.failing = True
    else:
        topic.stop()
    run_id = _complete(plane, "blob-event-2")
    assert plane.get_run(run_id).state is RunState.COMPLETED  # transitions recorded all the same
    assert [r.id for r in plane.store.unpublished_runs()] == [run_id]
    if outage == "500s":
        topic.failing = False
    else:
        topic.start()
    plane.reconcile()
    assert topic.wait_delivered(timeout=30)
    assert [e["type"] for e in webhook.received] == COMPLETED_SEQUENCE
    assert len({e["id"] for e in webhook.received}) == len(webhook.received)
    assert plane.store.unpublished_runs() == []


def test_the_topic_refuses_a_wrong_key_and_invalid_events(topic):
    assert topic.accept({"aeg-sas-key": "wrong"}, b"[]")[0] == 401
    status, reply = topic.accept({"authorization": f"Bearer {topic.key}"}, b'[{"id": "1", "type": "t"}]')
    assert status == 400 and "source" in reply["error"]["message"]
    assert problems({"id": "1", "source": "/s", "specversion": "1.0", "type": "t", "Bad-Name": 1}) == [
        "attribute name 'Bad-Name' is not lowercase alphanumeric"
    ]


def test_events_tail_shows_what_the_topic_accepted(plane, topic, capsys):
    run_id = _complete(plane, "blob-event-3")
    assert main(["events", "tail", "--topic", topic.endpoint, "--key", topic.key, "--once", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["type"] for e in lines] == COMPLETED_SEQUENCE and lines[0]["id"] == f"{run_id}:1"
    assert main(["events", "tail", "--topic", topic.endpoint, "--key", topic.key, "--once"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "aztrain.run.accepted" in first and f"jobs/digits/runs/{run_id}" in first and "blob-event-3" in first

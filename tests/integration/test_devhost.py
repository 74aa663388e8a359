"""The dev host over real HTTP, with a real Azurite: HTTP triggers, the Event Grid webhook, timers, blob events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.eventgrid import EventGridEvent
from azure.storage.blob import BlobServiceClient

from aztrain.service.settings import AZURITE_CONNECTION_STRING
from devhost import (
    Azurite,
    AzuriteError,
    DevHost,
    Subscription,
    azurite_connection_string,
    blob_created_event,
)
from devhost.blob_events import BlobWatcher, blob_subject
from devhost.reply import INTERNAL_ERROR
from tests.conftest import free_port_block

pytestmark = pytest.mark.azurite

WEBHOOK = "/runtime/webhooks/EventGrid"


# --- the app under test -------------------------------------------------------------------------


class Recorder:
    """What the test app's functions saw, by function name (they run on the host's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, list[Any]] = {}

    def add(self, function: str, value: Any) -> int:
        with self._lock:
            calls = self._calls.setdefault(function, [])
            calls.append(value)
            return len(calls)

    def calls(self, function: str) -> list[Any]:
        with self._lock:
            return list(self._calls.get(function, []))

    def events(self, function: str, subject: str) -> list[func.EventGridEvent]:
        return [e for e in self.calls(function) if e.subject == subject]


def build_app(recorder: Recorder) -> func.FunctionApp:
    """A fresh app per host: azure-functions lets `get_functions()` index an app only once."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="items/{item_id}", methods=["GET", "POST"])
    def item(req: func.HttpRequest) -> func.HttpResponse:
        payload = {
            "method": req.method,
            "item_id": req.route_params["item_id"],
            "params": dict(req.params),
            "trace": req.headers.get("X-Trace"),
            "body": req.get_body().decode(),
            "url": req.url,
        }
        status = 201 if req.method == "POST" else 200
        return func.HttpResponse(
            json.dumps(payload), status_code=status, mimetype="application/json", headers={"X-Item": "yes"}
        )

    @app.route(route="items/special", methods=["GET"])
    def special_item(req: func.HttpRequest) -> str:
        return "special"

    @app.route(route="fail", methods=["GET"])
    def fail(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("kaput")

    @app.route(route="hello/{name}", methods=["GET"])
    async def hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        await asyncio.sleep(0)
        return func.HttpResponse(f"hello {req.route_params['name']} from {context.function_name}")

    @app.event_grid_trigger(arg_name="event")
    def on_event(event: func.EventGridEvent) -> None:
        recorder.add("on_event", event)
        if "boom" in event.subject:
            raise RuntimeError("boom requested")

    @app.event_grid_trigger(arg_name="event")
    def on_flaky(event: func.EventGridEvent) -> None:
        seen = recorder.add("on_flaky", event)
        if sum(e.id == event.id for e in recorder.calls("on_flaky")) == 1:
            raise RuntimeError(f"first delivery of {event.id} fails (call {seen})")

    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=False)
    def tick(timer: func.TimerRequest) -> None:
        recorder.add("tick", timer)

    return app


# --- fixtures and helpers -----------------------------------------------------------------------


@dataclass
class World:
    host: DevHost
    recorder: Recorder
    blobs: BlobServiceClient
    connection_string: str
    uploads: str  # watched under incoming/, *.csv or *.json, by on_event
    flaky: str  # watched whole, by on_flaky; created by a test, after the host started
    subscriptions: list[Subscription]


@pytest.fixture(scope="module")
def world(azurite: str) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:8]
    uploads, flaky = f"devhost-up-{suffix}", f"devhost-flaky-{suffix}"
    blobs = BlobServiceClient.from_connection_string(azurite)
    blobs.create_container(uploads)
    subscriptions = [
        Subscription(
            name="uploads",
            function_name="on_event",
            container=uploads,
            subject_begins_with=blob_subject(uploads, "incoming/"),
            subject_ends_with=(".csv", ".json"),
        ),
        Subscription(name="flaky", function_name="on_flaky", container=flaky),
    ]
    recorder = Recorder()
    host = DevHost(
        build_app(recorder),
        connection_string=azurite,
        subscriptions=subscriptions,
        port=0,
        timer_interval=0.2,
        blob_poll_interval=0.1,
    )
    with host:
        yield World(host, recorder, blobs, azurite, uploads, flaky, subscriptions)


def wait_for(condition: Callable[[], Any], *, timeout: float = 10.0, what: str) -> Any:
    """Poll `condition` until truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    world: World, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Response:
    request = urllib.request.Request(world.host.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def post_events(world: World, function: str, payload: Any, event_type: str | None = "Notification") -> Response:
    headers = {"Content-Type": "application/json"}
    if event_type is not None:
        headers["aeg-event-type"] = event_type
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return call(world, "POST", f"{WEBHOOK}?functionName={function}", body=body, headers=headers)


def grid_event(subject: str, **overrides: Any) -> dict[str, Any]:
    event = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z",
        "subject": subject,
        "eventType": "Test.Event",
        "eventTime": "2024-05-06T07:08:09.1234567Z",
        "data": {"n": 1},
        "dataVersion": "2",
        "metadataVersion": "1",
    }
    return {**event, **overrides}


def upload(world: World, container: str, name: str, data: bytes = b"a,b\n1,2\n") -> dict[str, Any]:
    result: dict[str, Any] = world.blobs.get_blob_client(container, name).upload_blob(data, overwrite=True)
    return result


# --- Azurite --------------------------------------------------------------------------------------


def test_connection_string_helper_points_the_account_at_other_ports() -> None:
    assert azurite_connection_string(AZURITE_CONNECTION_STRING) == AZURITE_CONNECTION_STRING
    custom = azurite_connection_string(AZURITE_CONNECTION_STRING, blob_port=20000, queue_port=20001, table_port=20002)
    assert "BlobEndpoint=http://127.0.0.1:20000/devstoreaccount1;" in custom
    assert "TableEndpoint=http://127.0.0.1:20002/devstoreaccount1;" in custom


def test_azurite_listens_where_its_connection_string_points(tmp_path: Path) -> None:
    custom = azurite_connection_string(AZURITE_CONNECTION_STRING, blob_port=20000, queue_port=20001, table_port=20002)
    azurite = Azurite(connection_string=custom, location=tmp_path, project_root=tmp_path)
    assert (azurite.blob_port, azurite.queue_port, azurite.table_port) == (20000, 20001, 20002)
    assert azurite.binary == tmp_path / "node_modules" / ".bin" / "azurite"
    with pytest.raises(AzuriteError, match="TableEndpoint"):
        Azurite(connection_string=custom.replace("TableEndpoint", "Other"), location=tmp_path, project_root=tmp_path)


def test_missing_azurite_binary_says_how_to_install_it(tmp_path: Path) -> None:
    base = free_port_block()
    connection_string = azurite_connection_string(
        AZURITE_CONNECTION_STRING, blob_port=base, queue_port=base + 1, table_port=base + 2
    )
    azurite = Azurite(connection_string=connection_string, location=tmp_path, project_root=tmp_path)
    with pytest.raises(AzuriteError, match="make setup"):
        azurite.start()


def test_a_running_azurite_is_reused_and_left_running(azurite: str, tmp_path: Path) -> None:
    with Azurite(connection_string=azurite, location=tmp_path, project_root=tmp_path) as second:
        assert second.reused
    assert list(BlobServiceClient.from_connection_string(azurite).list_containers()) is not None  # still up


# --- HTTP triggers ------------------------------------------------------------------------------


def test_get_round_trips_route_params_query_and_headers(world: World) -> None:
    response = call(world, "GET", "/api/items/a%20b?color=red&size=&color=blue", headers={"X-Trace": "t-1"})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-item"] == "yes"
    body = response.json()
    assert body["method"] == "GET"
    assert body["item_id"] == "a b"
    assert body["params"] == {"color": "red,blue", "size": ""}
    assert body["trace"] == "t-1"
    assert body["url"].startswith(world.host.url + "/api/items/")


def test_post_passes_the_body_bytes(world: World) -> None:
    payload = json.dumps({"x": [1, 2, 3]}).encode()
    response = call(world, "POST", "/api/items/42", body=payload, headers={"Content-Type": "application/json"})
    assert response.status == 201
    assert response.json()["body"] == payload.decode()
    assert response.json()["item_id"] == "42"


def test_a_literal_route_wins_over_a_parameter_and_str_results_are_text(world: World) -> None:
    response = call(world, "GET", "/api/ITEMS/special")
    assert (response.status, response.body) == (200, b"special")
    assert response.headers["content-type"].startswith("text/plain")


def test_async_function_gets_a_context(world: World) -> None:
    response = call(world, "GET", "/api/hello/ada")
    assert (response.status, response.body) == (200, b"hello ada from hello")


@pytest.mark.parametrize("path", ["/api/nowhere", "/api/items/1/extra", "/elsewhere"])
def test_unknown_route_is_404_json(world: World, path: str) -> None:
    response = call(world, "GET", path)
    assert response.status == 404
    assert "error" in response.json()


def test_wrong_method_is_405_with_allow(world: World) -> None:
    response = call(world, "DELETE", "/api/items/1")
    assert response.status == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "method DELETE not allowed; allowed: GET, POST",
    }


def test_any_method_reaches_the_functions_not_the_servers_own_501(world: World) -> None:
    response = call(world, "TRACE", "/api/items/1")
    assert (response.status, response.headers["allow"]) == (405, "GET, POST")


def assert_logged_under_its_correlation_id(response: Response, caplog: pytest.LogCaptureFixture, detail: str) -> None:
    """A 500 names a correlation id and nothing else; the log has the details under that id."""
    body = response.json()
    assert set(body) == {"error", "correlation_id"}
    assert body["error"] == INTERNAL_ERROR
    assert detail not in response.body.decode()
    logged = [r for r in caplog.records if body["correlation_id"] in r.getMessage()]
    assert logged
    assert any(r.exc_info and detail in str(r.exc_info[1]) for r in logged)


def test_a_raising_function_is_500_naming_only_a_correlation_id(world: World, caplog: pytest.LogCaptureFixture) -> None:
    response = call(world, "GET", "/api/fail")
    assert response.status == 500
    assert_logged_under_its_correlation_id(response, caplog, "kaput")


# --- the Event Grid webhook ---------------------------------------------------------------------


def test_subscription_validation_handshake(world: World) -> None:
    validation = grid_event(
        "", eventType="Microsoft.EventGrid.SubscriptionValidationEvent", data={"validationCode": "code-123"}
    )
    response = post_events(world, "on_event", [validation], event_type="SubscriptionValidation")
    assert response.status == 200
    assert response.json() == {"validationResponse": "code-123"}
    assert world.recorder.events("on_event", "") == []  # the handshake runs no function


def test_notification_runs_the_function_per_event(world: World) -> None:
    first, second = grid_event("/direct/one"), grid_event("/direct/two")
    assert post_events(world, "on_event", [first, second]).status == 202
    assert post_events(world, "on_event", grid_event("/direct/single")).status == 202  # a lone object is fine
    [got] = world.recorder.events("on_event", "/direct/one")
    assert (got.id, got.topic, got.event_type, got.data_version) == (first["id"], first["topic"], "Test.Event", "2")
    assert got.get_json() == {"n": 1}
    assert isinstance(got.event_time, datetime)
    assert got.event_time.isoformat() == "2024-05-06T07:08:09.123456+00:00"
    assert len(world.recorder.events("on_event", "/direct/two")) == 1
    assert len(world.recorder.events("on_event", "/direct/single")) == 1


def test_cloudevents_validation_with_double_encoded_data(world: World) -> None:
    """A CloudEvents handshake is one object whose `data` is a JSON string, as the extension reads it."""
    validation = {
        "specversion": "1.0",
        "type": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "source": "/subscriptions/x/resourceGroups/y",
        "id": str(uuid.uuid4()),
        "data": json.dumps({"validationCode": "cloud-456", "validationUrl": "https://example.invalid"}),
    }
    response = post_events(world, "on_event", validation, event_type="SubscriptionValidation")
    assert (response.status, response.json()) == (200, {"validationResponse": "cloud-456"})
    plain = {**validation, "data": {"validationCode": "cloud-789"}}  # the extension re-parses an object too
    response = post_events(world, "on_event", plain, event_type="SubscriptionValidation")
    assert (response.status, response.json()) == (200, {"validationResponse": "cloud-789"})
    not_json = {**validation, "data": "{not json"}
    assert post_events(world, "on_event", not_json, event_type="SubscriptionValidation").status == 400


def test_a_raising_handler_is_500_so_event_grid_retries(world: World, caplog: pytest.LogCaptureFixture) -> None:
    response = post_events(world, "on_event", [grid_event("/direct/boom")])
    assert response.status == 500
    assert_logged_under_its_correlation_id(response, caplog, "boom requested")


def test_every_event_of_a_batch_runs_even_after_one_fails(world: World) -> None:
    batch = [grid_event("/batch/first"), grid_event("/batch/boom"), grid_event("/batch/last")]
    assert post_events(world, "on_event", batch).status == 500
    for event in batch:
        assert [e.id for e in world.recorder.events("on_event", event["subject"])] == [event["id"]]


@pytest.mark.parametrize(
    ("function", "payload", "event_type", "status"),
    [
        ("on_event", [{"id": "x"}], None, 400),
        ("on_event", [{"id": "x"}], "SomethingElse", 400),
        ("on_event", b"{not json", "Notification", 400),
        ("on_event", [1, 2], "Notification", 400),
        ("no_such_function", [{"id": "x"}], "Notification", 404),
        ("item", [{"id": "x"}], "Notification", 404),  # an HTTP function is not an Event Grid one
    ],
)
def test_bad_webhook_requests(world: World, function: str, payload: Any, event_type: str | None, status: int) -> None:
    assert post_events(world, function, payload, event_type=event_type).status == status


# --- timers -------------------------------------------------------------------------------------


def test_timer_runs_in_the_background_and_on_demand(world: World) -> None:
    wait_for(lambda: len(world.recorder.calls("tick")) >= 2, what="the timer to run twice at its 0.2 s dev interval")
    before = len(world.recorder.calls("tick"))
    assert world.host.run_timers_once() == {"tick": None}
    assert len(world.recorder.calls("tick")) > before
    timer = world.recorder.calls("tick")[-1]
    assert timer.past_due is False
    assert "Next" in timer.schedule_status


# --- blob events --------------------------------------------------------------------------------


def test_upload_delivers_exactly_one_blob_created_event(world: World) -> None:
    name = f"incoming/{uuid.uuid4().hex}.csv"
    subject = blob_subject(world.uploads, name)
    etag = upload(world, world.uploads, name)["etag"].strip('"')
    [event] = wait_for(lambda: world.recorder.events("on_event", subject), what="the BlobCreated event")
    world.host.drain()  # nothing else in flight: any duplicate would have arrived by now
    assert world.recorder.events("on_event", subject) == [event]
    url = world.blobs.get_blob_client(world.uploads, name).url
    data = event.get_json()
    assert event.event_type == "Microsoft.Storage.BlobCreated"
    assert event.topic.endswith("/providers/Microsoft.Storage/storageAccounts/devstoreaccount1")
    assert (data["url"], data["eTag"], data["contentLength"], data["blobType"]) == (url, etag, 8, "BlockBlob")
    assert event.id == str(uuid.uuid5(uuid.NAMESPACE_URL, url + etag))


def test_blobs_outside_the_filters_deliver_nothing(world: World) -> None:
    names = ["outside/data.csv", "incoming/readme.txt", f"incoming/{uuid.uuid4().hex}.csv.bak"]
    for name in names:
        upload(world, world.uploads, name)
    world.host.drain()
    delivered = {e.subject for e in world.recorder.calls("on_event")}
    assert not delivered & {blob_subject(world.uploads, n) for n in names}


def test_a_failing_handler_gets_the_same_event_again_in_a_container_created_later(world: World) -> None:
    world.blobs.create_container(world.flaky)
    subject = blob_subject(world.flaky, "new.bin")
    upload(world, world.flaky, "new.bin", b"\x00\x01")
    first, second = wait_for(
        lambda: len(got := world.recorder.events("on_flaky", subject)) >= 2 and got,
        what="the failed delivery to be retried",
    )
    world.host.drain()
    assert first.id == second.id
    assert len(world.recorder.events("on_flaky", subject)) == 2


def test_a_restarted_watcher_redelivers_with_the_same_id(world: World) -> None:
    name = f"incoming/{uuid.uuid4().hex}.json"
    upload(world, world.uploads, name, b"{}")
    world.host.drain()
    [delivered] = world.recorder.events("on_event", blob_subject(world.uploads, name))
    found: list[tuple[Subscription, dict[str, Any]]] = []
    BlobWatcher.from_connection_string(
        world.connection_string, world.subscriptions, lambda s, e: found.append((s, e))
    ).poll_once()
    [(subscription, again)] = [(s, e) for s, e in found if e["subject"] == delivered.subject]
    assert (subscription.function_name, again["id"]) == ("on_event", delivered.id)


def test_the_event_has_azure_blob_created_schema(world: World) -> None:
    name = "schema/check.csv"
    blob = world.blobs.get_blob_client(world.uploads, name)
    blob.upload_blob(b"1,2", overwrite=True)
    [props] = list(world.blobs.get_container_client(world.uploads).list_blobs(name_starts_with=name))
    event = blob_created_event(account="devstoreaccount1", container=world.uploads, blob=props, url=blob.url)
    assert set(event) == {
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "id",
        "data",
        "dataVersion",
        "metadataVersion",
    }
    assert set(event["data"]) == {
        "api",
        "clientRequestId",
        "requestId",
        "eTag",
        "contentType",
        "contentLength",
        "blobType",
        "url",
        "sequencer",
        "storageDiagnostics",
    }
    assert (event["dataVersion"], event["metadataVersion"], event["eventTime"][-1]) == ("", "1", "Z")
    assert len(event["data"]["sequencer"]) == 32
    parsed = EventGridEvent.from_dict(event)  # the SDK's model accepts it
    assert (parsed.subject, parsed.event_type) == (blob_subject(world.uploads, name), "Microsoft.Storage.BlobCreated")
    assert blob_created_event(account="devstoreaccount1", container=world.uploads, blob=props, url=blob.url) == event


def test_subscription_filters_are_azure_like() -> None:
    sub = Subscription("s", "f", "jobs", blob_subject("jobs", "manifests/"), (".yaml", ".yml"))
    assert sub.matches("/blobServices/default/containers/jobs/blobs/manifests/a.yaml")
    assert sub.matches("/blobServices/default/containers/JOBS/blobs/Manifests/A.YML")  # case-insensitive
    assert not sub.matches("/blobServices/default/containers/jobs/blobs/manifests/a.json")
    assert not sub.matches("/blobServices/default/containers/jobs/blobs/other/a.yaml")
    assert Subscription("all", "f", "jobs").matches("/blobServices/default/containers/jobs/blobs/x")
    assert not Subscription("all", "f", "jobs").matches("/blobServices/default/containers/jobs2/blobs/x")
    with pytest.raises(ValueError, match="must start with"):
        Subscription("s", "f", "jobs", blob_subject("data", ""))


def test_a_subscription_to_a_missing_function_is_refused() -> None:
    with pytest.raises(ValueError, match="not an Event Grid function"):
        DevHost(build_app(Recorder()), connection_string="", subscriptions=[Subscription("s", "item", "c1c")])


def test_an_app_can_be_indexed_only_once() -> None:
    app = build_app(Recorder())
    DevHost(app, connection_string="")
    with pytest.raises(ValueError, match="already indexed"):
        DevHost(app, connection_string="")


def test_serve_forever_returns_promptly_when_stopped() -> None:
    host = DevHost(build_app(Recorder()), connection_string="", port=0, timer_interval=None)
    serving = threading.Thread(target=host.serve_forever)
    serving.start()

    def answers() -> bool:
        try:
            with urllib.request.urlopen(host.url + "/api/hello/x", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(answers, what="the host to serve")
        url = host.url
    finally:
        host.stop()
        serving.join(timeout=5)
    assert not serving.is_alive()
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/api/hello/x", timeout=2)

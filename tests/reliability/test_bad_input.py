"""Hostile and careless input on every surface: a clear 4xx or a recorded rejection, never a 500, a crash or a hang.

Property-based (hypothesis) against the dev host serving `function_app` on Azurite: manifests
(as HTTP bodies and as blobs), HTTP bodies and headers, query strings, route parameters, and
Event Grid payloads for both event functions. Each example is one HTTP exchange, bounded by the
client's timeout, so a hang fails the example instead of stalling the suite.
"""

from __future__ import annotations

import json
import string
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aztrain.adapters.memory import InMemoryDataStore
from aztrain.cli.main import main
from aztrain.domain.errors import ManifestError
from aztrain.domain.manifest import parse_manifest
from aztrain.domain.records import BlobInfo
from aztrain.domain.runs import RunState
from aztrain.service.facade import BlobEvent
from aztrain.service.ports import DataStore
from aztrain.service.settings import PROJECT_ROOT
from tests.integration.test_devhost import Response
from tests.integration.test_http_api import Api, manifest, unique
from tests.reliability.conftest import blob_created, enqueue, post_events, retried, run_status_changed

pytestmark = pytest.mark.azurite

SETTINGS = settings(
    max_examples=25,
    deadline=None,  # no timing asserts: a hang is bounded by the HTTP client's timeout instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,  # the same examples every run: a red build is reproducible
    database=None,  # derandomized: nothing to remember between runs
)

HOSTILE_TEXT = st.sampled_from(
    [
        "../manifests/",
        "a/../../b/",
        "..\\\\x/",
        "/etc/",
        "x\x00y/",
        "\u202e/",
        "%2e%2e/",
        "a" * 5000,
        "",
        " ",
        "!!python/object/apply:os.system ['id']",
        "${HOME}",
        "$(id)",
        "`id`",
        "; rm -rf /",
    ]
)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | HOSTILE_TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
#: Where a hostile value goes in an otherwise valid manifest.
FIELDS = [
    ("apiVersion",),
    ("kind",),
    ("name",),
    ("data",),
    ("data", "container"),
    ("data", "prefix"),
    ("trainer",),
    ("trainer", "entrypoint"),
    ("trainer", "args"),
    ("trainer", "args", "epochs"),
    ("trainer", "args", "lr"),
    ("compute", "nodes"),
    ("compute", "processes_per_node"),
    ("compute", "vm_size"),
    ("compute", "priority"),
    ("compute", "max_runtime"),
    ("retrain",),
    ("retrain", "debounce"),
    ("retrain", "include"),
    ("registry", "promote_if"),
    ("surprise",),
]
SAFE = 200, 202, 400, 404, 409, 413, 415, 422


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest with one to three fields replaced by hostile or random values."""
    document = manifest(unique("fuzz"))
    for path in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        node = document
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[path[-1]] = draw(JSON_VALUES)
    return document


def rendered(document: dict[str, Any], as_yaml: bool) -> bytes:
    return (yaml.safe_dump(document) if as_yaml else json.dumps(document)).encode()


def assert_answered(response: Response) -> None:
    assert response.status in SAFE, f"{response.status}: {response.body[:300]!r}"
    if response.status >= 400:
        assert response.json()["detail"]  # a problem that says what is wrong


# ---------------------------------------------------------------------------------- manifests, HTTP bodies


@SETTINGS
@given(document=manifests(), as_yaml=st.booleans())
def test_hostile_manifests_posted_are_accepted_or_refused_with_a_4xx(stack: Api, document: Any, as_yaml: bool) -> None:
    content_type = "application/yaml" if as_yaml else "application/json"
    response = stack.call("POST", "/api/jobs", rendered(document, as_yaml), {"Content-Type": content_type})
    assert_answered(response)
    if response.status == 422:
        assert response.json()["run"]["state"] == RunState.REJECTED


@SETTINGS
@given(document=manifests(), as_yaml=st.booleans())
def test_hostile_manifest_blobs_become_runs_or_recorded_rejections(stack: Api, document: Any, as_yaml: bool) -> None:
    event = BlobEvent(id=str(uuid.uuid4()), container="jobs", name=f"manifests/{uuid.uuid4().hex}.yaml")
    stack.service.data.write(event.container, event.name, rendered(document, as_yaml))
    enqueue(stack, blob_created(event))
    (run,) = [r for r in stack.service.store.find_runs() if r.cause == event.id]
    assert run.state is not RunState.REJECTED or run.error


BILLION_LAUGHS = (
    "apiVersion: aztrain/v1\nkind: TrainingJob\nname: laughs\ndata: {container: datasets, prefix: laughs/}\n"
    "x0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
    + "trainer: {args: {epochs: *a8}}\n"
).encode()


@SETTINGS
@given(
    body=st.binary(max_size=2048) | st.text(max_size=2048).map(str.encode),
    content_type=st.sampled_from(["application/json", "application/yaml", "text/plain", "", "application/x-yaml"]),
    headers=st.dictionaries(
        st.sampled_from(["Idempotency-Key", "X-Request-Id", "Accept"]),
        st.text(string.printable.strip(), max_size=300),
        max_size=2,
    ),
)
@example(body=b"[" * 5000 + b"]" * 5000, content_type="application/json", headers={})
@example(body=b"a:\n" + b"  - " * 3000 + b"x", content_type="application/yaml", headers={})
@example(body=BILLION_LAUGHS, content_type="application/yaml", headers={})
@example(body=b"", content_type="application/json", headers={})
@example(body=b"\xff\xfe\x00", content_type="application/yaml", headers={})
def test_any_body_and_headers_posted_are_answered_with_a_clear_status(
    stack: Api, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
    assert_answered(stack.call("POST", "/api/jobs", body, sent))


def test_an_oversize_body_is_refused_by_its_declared_length_before_it_is_read(stack: Api) -> None:
    limit = stack.service.settings.max_manifest_bytes
    response = stack.call("POST", "/api/jobs", b"x" * (limit + 1), {"Content-Type": "application/yaml"})
    assert response.status == 413


# -------------------------------------------------------------------------- query strings, route parameters

LISTS = ["/api/runs", "/api/jobs", "/api/models", "/api/deadletters", "/api/clusters"]
QUERY_NAMES = st.sampled_from(["limit", "continuation", "job", "state", "offset", "tail", "force", "all", "code"])


@SETTINGS
@given(
    path=st.sampled_from(LISTS),
    query=st.lists(st.tuples(QUERY_NAMES | st.text(max_size=8), JSON_SCALARS.map(str)), max_size=4),
)
def test_any_query_string_is_answered_with_a_clear_status(stack: Api, path: str, query: list[tuple[str, str]]) -> None:
    assert_answered(stack.call("GET", f"{path}?{urlencode(query)}"))


ROUTES = [
    ("GET", "/api/runs/{}"),
    ("GET", "/api/runs/{}/logs?tail=5"),
    ("GET", "/api/runs/{}/metrics"),
    ("POST", "/api/runs/{}/cancel"),
    ("GET", "/api/jobs/{}/window"),
    ("GET", "/api/models/{}"),
    ("GET", "/api/models/digits/versions/{}"),
]


@SETTINGS
@given(
    route=st.sampled_from(ROUTES),
    value=st.text(min_size=1, max_size=300) | HOSTILE_TEXT.filter(bool) | st.from_regex(r"\A\d{6,13}\Z"),
)
@example(route=ROUTES[0], value="8232774399990-abc/def")
@example(route=ROUTES[0], value="..")
def test_any_route_parameter_is_answered_with_a_clear_status(stack: Api, route: tuple[str, str], value: str) -> None:
    method, template = route
    assert_answered(stack.call(method, template.format(quote(value, safe=""))))


# ------------------------------------------------------------------------------------ Event Grid payloads

SUBJECTS = (
    st.text(max_size=200)
    | st.builds(
        lambda c, n: f"/blobServices/default/containers/{c}/blobs/{n}", st.text(max_size=30), st.text(max_size=60)
    )
    | st.builds(lambda n: f"/blobServices/default/containers/jobs/blobs/manifests/{n}", HOSTILE_TEXT | st.text())
    | st.builds(lambda n: f"/blobServices/default/containers/datasets/blobs/{n}", HOSTILE_TEXT | st.text())
)


@st.composite
def grid_events(draw: st.DrawFn, function: str) -> dict[str, Any]:
    """An Event Grid envelope whose id, type, subject and data are anything at all."""
    if function == "on_blob_created":  # a message of the blob-events queue
        event = blob_created_stub()
        event["subject"] = draw(SUBJECTS)
    else:
        event = run_status_changed(draw(st.text(max_size=60)), draw(st.text(max_size=20)))
        event["data"] = draw(st.just(event["data"]) | JSON_VALUES | st.fixed_dictionaries({"runId": JSON_VALUES}))
    event["id"] = draw(st.text(min_size=1, max_size=80))
    event["eventType"] = draw(st.just(event["eventType"]) | st.text(max_size=60))
    if function == "on_blob_created":
        event["data"] = draw(st.just(event["data"]) | JSON_VALUES)
    return event


def blob_created_stub() -> dict[str, Any]:
    return blob_created(BlobEvent(id="stub", container="datasets", name="stub.csv", etag='"1"'))


@SETTINGS
@given(data=st.data())
def test_any_event_grid_payload_is_acted_on_or_dead_lettered_never_a_500(stack: Api, data: st.DataObject) -> None:
    events = data.draw(st.lists(grid_events("on_run_status_changed"), min_size=1, max_size=3))
    response = post_events(stack, "on_run_status_changed", events)
    assert response.status == 202, response.body


@SETTINGS
@given(messages=st.lists(grid_events("on_blob_created") | st.binary(max_size=200), min_size=1, max_size=3))
def test_any_blob_events_message_is_acted_on_or_dead_lettered_at_once(stack: Api, messages: list[Any]) -> None:
    enqueue(stack, *messages)  # settled: none waits out a retry, none reaches the poison queue
    assert retried(stack) == []


def test_an_event_that_can_never_succeed_is_a_dead_letter_seen_in_the_api_and_the_cli(
    stack: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = {**blob_created_stub(), "id": f"wrong-{uuid.uuid4()}", "eventType": "Microsoft.Storage.BlobDeleted"}
    no_run = {**run_status_changed("aztrain-x", "Running"), "id": f"bare-{uuid.uuid4()}", "data": {"runStatus": "x"}}
    for _ in range(2):  # delivered twice: still one letter each
        enqueue(stack, wrong)
        assert post_events(stack, "on_run_status_changed", [no_run]).status == 202

    listed = stack.call("GET", "/api/deadletters?limit=500")
    assert listed.status == 200
    letters = {d["event_id"]: d for d in listed.json()["deadletters"]}
    assert letters[wrong["id"]]["reason"] == "not a Microsoft.Storage.BlobCreated event"
    assert letters[wrong["id"]]["function"] == "on_blob_event"
    assert letters[no_run["id"]]["reason"] == "data has no runId and runStatus strings"
    assert [d["event_id"] for d in listed.json()["deadletters"]].count(wrong["id"]) == 1

    capsys.readouterr()
    assert main(["--url", stack.url, "deadletters", "--json"]) == 0
    shown = {d["event_id"]: d["reason"] for d in json.loads(capsys.readouterr().out)["deadletters"]}
    assert shown[no_run["id"]] == "data has no runId and runStatus strings"
    assert main(["--url", stack.url, "deadletters"]) == 0
    assert "not a Microsoft.Storage.BlobCreated event" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ local downloads


@pytest.mark.parametrize("name", ["../escape.csv", "d/../../escape.csv", "/tmp/escape.csv", "d\\..\\escape.csv"])
def test_a_download_never_writes_outside_its_folder(data_store: DataStore, tmp_path: Path, name: str) -> None:
    """Blob names in a snapshot come from storage: one that climbs out is refused before anything is written."""
    if isinstance(data_store, InMemoryDataStore):
        data_store.write("datasets", name, b"x")  # the fake takes any name, so the listing really holds it
    listed = [b for b in data_store.list("datasets") if b.name == name] or [BlobInfo(name, 1, '"0x1"')]
    dest = tmp_path / "run" / "data"
    dest.mkdir(parents=True)
    with pytest.raises(ValueError, match="blob name"):
        data_store.download("datasets", listed, dest)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------------------------- the README's limits


def valid(**changes: Any) -> bytes:
    document = manifest(unique("fuzz"))
    document["data"].update(changes.pop("data", {}))
    return json.dumps({**document, **changes}).encode()


@pytest.mark.parametrize(
    ("document", "documented", "shown"),
    [
        (
            b"#" * 70_000,
            "`document is N bytes; the limit is 65536 bytes`",
            r"document is 70000 bytes; the limit is 65536",
        ),
        (b"", "`document is empty`", r"document is empty"),
        (b"[" * 40 + b"]" * 40, "`document nests N levels deep; the limit is 32`", r"document nests 40 levels deep"),
        (
            BILLION_LAUGHS,
            "`document repeats a list or mapping through a YAML alias (*name); write it out`",
            r"YAML alias",
        ),
        (valid(name="A"), "`name: use 3-63 lowercase letters, digits or '-' …`", r"name: use 3-63 lowercase letters"),
        (
            valid(data={"prefix": "../x/"}),
            "`data.prefix: must not contain '.' or '..' segments; …`",
            r"data\.prefix: must",
        ),
        (valid(data={"prefix": "a//b/"}), "`//`", r"data\.prefix: must not contain empty segments \('//'\)"),
        (valid(trainer={"args": {"epochs": "many"}}), "`trainer.args.<name>: …`", r"trainer\.args\.epochs: "),
    ],
)
def test_each_limit_in_the_readme_is_enforced_with_the_error_it_shows(
    document: bytes, documented: str, shown: str
) -> None:
    limits = (PROJECT_ROOT / "README.md").read_text().split("### Limits", 1)[1].split("\n## ", 1)[0]
    assert documented in limits
    with pytest.raises(ManifestError, match=shown):
        parse_manifest(document, max_bytes=65536)

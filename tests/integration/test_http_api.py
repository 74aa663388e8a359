"""The HTTP API's contract, over real HTTP: the dev host serving `function_app` on Azurite.

Every reply of a documented route is checked against the schema the served OpenAPI document
gives for that route and status (`Api.call`), so each test is also a contract test.
"""

from __future__ import annotations

import functools
import http.client
import json
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from aztrain.api.models import MAX_LOG_OFFSET
from aztrain.cli.main import main
from aztrain.domain.records import ModelVersion
from aztrain.domain.runs import RunState
from aztrain.service.facade import ControlPlane
from aztrain.service.run_outputs import LiveMetrics, RunFiles
from devhost import DevHost
from functions import not_allowed
from tests.apps import hosted_app
from tests.integration.test_devhost import Response, wait_for

pytestmark = pytest.mark.azurite

PROBLEM = "application/problem+json"


def media_type(response: Response) -> str:
    return response.headers.get("content-type", "").split(";")[0]


@dataclass
class Api:
    """The running host, its OpenAPI document, and the service behind it (for arranging state directly)."""

    url: str
    host: DevHost
    service: ControlPlane
    openapi: dict[str, Any] = field(default_factory=dict)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send a request (no header but those given); a reply of a documented route must match its schema."""
        connection = http.client.HTTPConnection(urlsplit(self.url).netloc, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            reply = connection.getresponse()
            response = Response(reply.status, _lower(reply.getheaders()), reply.read())
        finally:
            connection.close()
        if self.openapi:
            self._conforms(method, path, response)
        return response

    def submit(self, manifest: dict[str, Any], query: str = "", **headers: str) -> Response:
        return self.call("POST", f"/api/jobs{query}", json.dumps(manifest).encode(), headers)

    def _conforms(self, method: str, path: str, response: Response) -> None:
        route = path.split("?")[0]
        for template, operations in self.openapi["paths"].items():
            if re.fullmatch(re.sub(r"\{[a-z_]+\}", "[^/]+", template), route) and method.lower() in operations:
                declared = operations[method.lower()]["responses"].get(str(response.status))
                assert declared, f"{method} {template} answered {response.status}, which its document does not list"
                for declared_type, content in declared.get("content", {}).items():
                    assert media_type(response) == declared_type
                    if "$ref" in content["schema"]:
                        schema = {**content["schema"], "components": self.openapi["components"]}
                        Draft202012Validator(schema).validate(response.json())
                return


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in items}


@pytest.fixture(scope="module")
def api(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`function_app` on the dev host, on a table prefix of its own; timers off and local clusters that never
    come up, so runs stay where submit (and `new_run`'s advance) put them, and none trains."""
    state_dir = tmp_path_factory.mktemp("api-local")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AZTRAIN_LOCAL_PROVISION_SECONDS", "86400")
        with hosted_app(azurite, table_prefix="api" + uuid.uuid4().hex[:8], state_dir=state_dir) as (host, service):
            api = Api(host.url, host, service)
            api.openapi = api.call("GET", "/api/openapi.json").json()
            yield api


def manifest(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aztrain/v1",
        "kind": "TrainingJob",
        "name": name,
        "data": {"container": "datasets", "prefix": f"{name}/"},
        "trainer": {"args": {"epochs": 1}},
        **overrides,
    }


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def new_run(api: Api, job: str | None = None) -> dict[str, Any]:
    name = job or unique("run")
    api.service.data.write("datasets", f"{name}/a.csv", b"1,2\n")  # a run needs data to go on
    response = api.submit(manifest(name), "?force=true")
    assert response.status == 202, response.body
    api.service.advance(response.json()["run"]["id"])  # the reconciler's first step: its snapshot, its cluster
    run: dict[str, Any] = api.call("GET", response.headers["location"]).json()
    return run


# ------------------------------------------------------------------------------------------ the document


def test_openapi_document_is_valid_and_lists_exactly_the_served_routes(api: Api) -> None:
    validate(api.openapi)
    documented = {(path, method) for path, operations in api.openapi["paths"].items() for method in operations}
    served = {
        (f"/api/{function.route.template}", method.lower())
        for function in api.host.index.http
        for method in function.methods or ()
        if not function.route.template.startswith("dashboard")  # the dashboard's page, not the API
        and not function.name.startswith("not_allowed_")  # the 405s for what a path does not declare
    }
    assert documented == served
    assert api.openapi["components"]["schemas"]["JobManifest"]["properties"]["name"]["pattern"]


def test_every_undeclared_method_of_a_documented_path_is_405_with_allow_and_a_problem(api: Api) -> None:
    for template, operations in api.openapi["paths"].items():
        path = template.format(run_id="0000000000000-000000", name="some-job", version="1", team="some-team")
        declared = sorted(method.upper() for method in operations)
        for method in set(not_allowed.HTTP_METHODS) - set(declared):
            response = api.call(method, path)
            assert (response.status, response.headers.get("allow")) == (405, ", ".join(declared)), (method, path)
            if method != "HEAD":  # a HEAD answer has no body
                assert media_type(response) == PROBLEM
                assert response.json()["type"].endswith("/method-not-allowed")


def test_health(api: Api) -> None:
    response = api.call("GET", "/api/health")
    assert response.status == 200
    assert response.json() == {"status": "ok", "backend": "local", "storage": "ok"}


# ---------------------------------------------------------------------------------------------- submit


def test_submit_answers_202_with_location_and_where_outputs_go(api: Api) -> None:
    name = unique("submit")
    api.service.data.write("datasets", f"{name}/a.csv", b"1,2\n")  # the run goes on, so a resubmit finds it active
    response = api.submit(manifest(name))
    assert response.status == 202
    body = response.json()
    run = body["run"]
    assert (body["created"], body["reason"], run["job"]) == (True, "", name)
    assert response.headers["location"] == f"/api/runs/{run['id']}"
    assert run["outputs"]["logs"] == f"runs/{name}/{run['id']}/logs/driver.log"
    assert run["outputs"]["model"] == f"runs/{name}/{run['id']}/outputs/model.pt"
    assert run["outputs"]["epochs"] == f"runs/{name}/{run['id']}/outputs/metrics.jsonl"

    again = api.submit(manifest(name))
    assert again.status == 200
    assert (again.json()["created"], again.json()["run"]["id"]) == (False, run["id"])
    assert "location" not in again.headers


def test_an_invalid_manifest_is_a_422_problem_naming_each_field_with_the_rejected_run(api: Api) -> None:
    bad = manifest(unique("bad"), compute={"nodes": 0, "colour": "red"})
    response = api.submit(bad)
    assert response.status == 422
    assert media_type(response) == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/invalid-manifest")
    assert problem["instance"] == "/api/jobs"
    assert {e["field"] for e in problem["errors"]} == {"compute.nodes", "compute.colour"}
    assert problem["run"]["state"] == "REJECTED"
    assert problem["run"]["outputs"] is None
    assert problem["error"] == problem["detail"]  # what clients of the first API read
    # The run keeps its problems as the same list, field by field: shown again wherever the run is.
    shown = api.call("GET", f"/api/runs/{problem['run']['id']}").json()
    assert shown["problems"] == problem["run"]["problems"] == problem["errors"]
    assert any(e["message"].startswith("unknown field") for e in shown["problems"])


def test_a_document_that_is_not_yaml_is_a_400_problem(api: Api) -> None:
    response = api.call("POST", "/api/jobs", b"name: [unclosed", {"Content-Type": "application/yaml"})
    assert response.status == 400
    assert response.json()["type"].endswith("/malformed-manifest")
    assert response.json()["run"]["state"] == "REJECTED"
    assert [e["field"] for e in response.json()["errors"]] == ["(syntax)"]


def test_yaml_and_no_content_type_are_accepted_and_other_types_are_415(api: Api) -> None:
    name = unique("types")
    api.service.data.write("datasets", f"{name}/a.csv", b"1,2\n")
    data = f"data: {{container: datasets, prefix: {name}/}}\n"
    yaml_text = f"apiVersion: aztrain/v1\nkind: TrainingJob\nname: {name}\n{data}".encode()
    assert api.call("POST", "/api/jobs", yaml_text, {"Content-Type": "application/yaml"}).status == 202
    assert api.call("POST", "/api/jobs", yaml_text).status == 200  # no Content-Type at all: read as YAML
    form = api.call("POST", "/api/jobs", yaml_text, {"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415
    assert form.json()["type"].endswith("/unsupported-media-type")


def test_oversize_manifests_are_refused_with_413_before_they_are_parsed(api: Api) -> None:
    limit = api.service.settings.max_manifest_bytes
    request_id = unique("oversize")
    oversize = b"# " + b"x" * limit + b"\n"
    declared = api.call("POST", "/api/jobs", oversize, {"Content-Type": "application/json", "X-Request-Id": request_id})
    assert declared.status == 413
    assert declared.json()["type"].endswith("/too-large")
    # Chunked, so no Content-Length is declared: the actual length decides.
    chunked = api.call("POST", "/api/jobs", iter([oversize[:100], oversize[100:]]), {"X-Request-Id": request_id})
    assert chunked.status == 413
    assert not [r for r in api.service.store.find_runs() if r.cause == f"http:{request_id}"]  # nothing recorded


# --------------------------------------------------------------------------------------- idempotency


def test_a_retried_submit_with_the_same_idempotency_key_returns_the_first_answer_and_makes_one_run(api: Api) -> None:
    name, key = unique("idem"), str(uuid.uuid4())
    first = api.submit(manifest(name), "?force=true", **{"Idempotency-Key": key})
    retry = api.submit(manifest(name), "?force=true", **{"Idempotency-Key": key})
    assert first.status == retry.status == 202
    assert retry.body == first.body
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert len(api.service.store.find_runs(job=name)) == 1

    other = api.submit(manifest(name, trainer={"args": {"epochs": 2}}), "?force=true", **{"Idempotency-Key": key})
    assert other.status == 422
    assert other.json()["type"].endswith("/idempotency-key-reused")
    assert len(api.service.store.find_runs(job=name)) == 1


def test_concurrent_retries_with_one_key_all_get_one_answer_and_one_run(api: Api) -> None:
    name, key = unique("idem-race"), str(uuid.uuid4())
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: api.submit(manifest(name), **{"Idempotency-Key": key}), range(4)))
    assert {(a.status, a.body) for a in answers} == {(answers[0].status, answers[0].body)}
    assert len(api.service.store.find_runs(job=name)) == 1


def test_a_rejected_submit_retried_with_its_key_is_rejected_the_same_once(api: Api) -> None:
    name, key = unique("idem-bad"), str(uuid.uuid4())
    bad = manifest(name, compute={"nodes": 0})
    first, retry = (api.submit(bad, **{"Idempotency-Key": key}) for _ in range(2))
    assert first.status == retry.status == 422
    assert retry.body == first.body
    assert len(api.service.store.find_runs(job=name)) == 1


@pytest.mark.parametrize(
    ("header", "value"),
    [("Idempotency-Key", "x" * 300), ("Idempotency-Key", ""), ("X-Request-Id", ""), ("X-Request-Id", "x" * 129)],
)
def test_a_header_not_of_its_documented_shape_is_a_400_naming_it(api: Api, header: str, value: str) -> None:
    response = api.submit(manifest(unique("headers")), **{header: value})
    assert response.status == 400
    assert response.json()["errors"][0]["field"] == header


def test_a_required_body_sent_empty_is_a_400_naming_it(api: Api) -> None:
    response = api.call("PUT", "/api/teams/empty-body", b"", {"Content-Type": "application/json"})
    assert response.status == 400
    assert response.json()["errors"][0]["field"] == "body"


def test_a_quoted_idempotency_key_is_the_key_between_the_quotes(api: Api) -> None:
    name, key = unique("idem-quoted"), str(uuid.uuid4())
    first = api.submit(manifest(name), "?force=true", **{"Idempotency-Key": f'"{key}"'})
    retry = api.submit(manifest(name), "?force=true", **{"Idempotency-Key": key})
    assert first.status == 202 and retry.headers.get("idempotent-replayed") == "true"
    assert retry.json()["run"]["id"] == first.json()["run"]["id"]


# ----------------------------------------------------------------------------------------- pagination


def test_pages_of_runs_walk_every_run_once_newest_first_while_new_runs_arrive(api: Api) -> None:
    job = unique("pages")
    made = [new_run(api, job)["id"] for _ in range(7)]
    seen: list[str] = []
    path = f"/api/runs?job={job}&limit=3"
    while path:
        page = api.call("GET", path).json()
        seen += [r["id"] for r in page["runs"]]
        if len(seen) == 3:
            new_run(api, job)  # newer than every page: it sorts first, before the token
        path = f"/api/runs?job={job}&limit=3&continuation={page['next']}" if page["next"] else ""
    assert seen == sorted(made)  # ids sort newest first: the 7 made before the walk, none twice
    assert len(seen) == len(set(seen)) == 7


def test_jobs_and_models_page_too(api: Api) -> None:
    for name in (unique("jobs-page"), unique("jobs-page")):
        new_run(api, name)
    names: list[str] = []
    path = "/api/jobs?limit=1"
    while path:
        page = api.call("GET", path).json()
        names += [j["name"] for j in page["jobs"]]
        path = f"/api/jobs?limit=1&continuation={page['next']}" if page["next"] else ""
    assert names == sorted(set(names)) == sorted(j.name for j in api.service.store.list_jobs())
    models = api.call("GET", "/api/models?limit=1")
    assert models.status == 200 and "next" in models.json()


@pytest.mark.parametrize(
    "path",
    [
        *(
            f"/api/runs?{query}"
            for query in (
                "limit=0",
                "limit=many",
                "state=BOGUS",
                "continuation=%21%21",
                "continuation=e30",
                "continuation=0",  # the shape of a token, but not one this API issued
                "job=a%2Fb",
                "state=running",  # states are as the document spells them
                "state=RUNNING,",
                *(f"{name}=" for name in ("job", "limit", "continuation")),  # empty is a value, not an absence
                "limit=1.0",
                "limit=%2B5",
            )
        ),
        "/api/runs?job=%00",
        "/api/jobs?limit=-1",
        "/api/models?continuation=not%20a%20token",
        *(
            f"/api/runs/9999999999999-abcdef/logs?{query}"
            for query in ("offset=-1", "tail=0", "tail=x", "offset=1.5", "offset=", f"offset={MAX_LOG_OFFSET + 1}")
        ),
        *(f"/api/runs/9999999999999-abcdef?all={value}" for value in ("", "1", "yes", "True")),
    ],
)
def test_malformed_query_values_are_400_problems(api: Api, path: str) -> None:
    response = api.call("GET", path)
    assert response.status == 400
    assert response.json()["errors"]


def test_a_large_limit_is_capped_and_states_filter(api: Api) -> None:
    job = unique("filter")
    new_run(api, job)
    capped = api.call("GET", f"/api/runs?job={job}&limit=100000&state=PROVISIONING,ACCEPTED&state=FAILED")
    assert capped.status == 200
    assert [r["state"] for r in capped.json()["runs"]] in (["PROVISIONING"], ["ACCEPTED"], ["FAILED"])


# ---------------------------------------------------------------------------------- route parameters

HOSTILE = ["%2F", "a%2Fb", "..", "%2E%2E", "%00", "a%0Ab", "%7F", "x" * 2048, "%C3%A9t%C3%A9", "%27%3B--", "%20", "*"]
ROUTES = [
    ("GET", "/api/runs/{}"),
    ("POST", "/api/runs/{}/cancel"),
    ("GET", "/api/runs/{}/logs"),
    ("GET", "/api/runs/{}/metrics"),
    ("GET", "/api/jobs/{}/window"),
    ("GET", "/api/models/{}"),
    ("GET", "/api/models/{}/versions/1"),
    ("GET", "/api/models/some-model/versions/{}"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_hostile_route_parameters_are_400_never_500(api: Api, method: str, route: str) -> None:
    for value in HOSTILE:
        response = api.call(method, route.format(value))
        assert response.status == 400, (value, response.status, response.body[:300])
        assert media_type(response) == PROBLEM
        problem = response.json()
        assert problem["errors"][0]["message"].startswith("must be ")
        assert "xxxxxxxxxx" not in problem["detail"]  # the value is not echoed (`instance` is the path as sent)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/runs/9999999999999-abcdef"),
        ("GET", "/api/runs/999999"),
        ("POST", "/api/runs/9999999999999-abcdef/cancel"),
        ("GET", "/api/runs/9999999999999-abcdef/logs"),
        ("GET", "/api/runs/9999999999999-abcdef/metrics"),
        ("GET", "/api/jobs/no-such-job/window"),
        ("GET", "/api/models/no-such-model"),
        ("GET", "/api/models/no-such-model/versions/1"),
    ],
)
def test_well_formed_but_absent_is_404(api: Api, method: str, path: str) -> None:
    response = api.call(method, path)
    assert response.status == 404
    assert response.json()["type"].endswith("/not-found")


def test_runs_are_found_by_a_unique_prefix_and_an_ambiguous_one_is_a_409(api: Api) -> None:
    first, second = new_run(api)["id"], new_run(api)["id"]
    common = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    assert common >= 6, "runs made a moment apart share their leading digits"
    found = api.call("GET", f"/api/runs/{first[:13]}")  # the millisecond: unique here
    assert found.status == 200 and found.json()["id"] == first
    assert found.json()["history"][0]["to"] == "ACCEPTED"
    for method, route in ROUTES[:4]:  # every route of a run
        ambiguous = api.call(method, route.format(first[:common]))
        assert ambiguous.status == 409
        assert {first, second} <= set(ambiguous.json()["candidates"])
    assert api.call("GET", f"/api/runs/{first[:5]}").status == 400  # too short to mean anything


def test_a_run_is_found_by_its_short_id_the_one_the_cli_and_dashboard_show(api: Api) -> None:
    run = new_run(api)
    assert run["short_id"] == run["id"].rsplit("-", 1)[1] and len(run["short_id"]) == 6
    for method, route in ROUTES[:3]:  # the run, its cancel and its log
        assert api.call(method, route.format(run["short_id"])).status in (200, 202), route
    found = api.call("GET", f"/api/runs/{run['short_id']}")
    assert found.status == 200 and found.json()["id"] == run["id"]


def test_a_runs_output_files_are_listed_and_each_is_served_as_an_attachment(api: Api) -> None:
    run = new_run(api)
    files = RunFiles(api.service.settings.runs_container, f"{run['job']}/{run['id']}/")
    assert api.call("GET", f"/api/runs/{run['short_id']}/outputs").json()["files"] == []
    assert api.call("GET", f"/api/runs/{run['id']}/outputs/model.pt").status == 404
    api.service.data.write(files.container, files.output("model.pt"), b"\x80weights")
    api.service.data.write(files.container, files.output("checkpoints/epoch-1.pt"), b"not an output")
    listed = api.call("GET", f"/api/runs/{run['id']}/outputs").json()["files"]
    assert listed == [{"name": "model.pt", "size": 8, "path": f"{files.container}/{files.output('model.pt')}"}]
    served = api.call("GET", f"/api/runs/{run['short_id']}/outputs/model.pt")
    assert served.status == 200 and served.body == b"\x80weights"
    assert served.headers["content-disposition"] == 'attachment; filename="model.pt"'
    assert api.call("GET", f"/api/runs/{run['id']}/outputs/..model").status == 400


def test_offline_validate_names_the_same_problems_as_the_service_all_at_once(
    api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = manifest(unique("same"), compute={"nodes": 9}, trainer={"args": {"epochs": "five", "batchsize": 3}})
    body["extra"] = 1
    refused = api.submit(body)
    assert refused.status == 422
    served = [f"{p['field']}: {p['message']}" for p in refused.json()["errors"]]
    path = tmp_path / "same.json"
    path.write_text(json.dumps(body))
    assert main(["validate", str(path), "--json"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["problems"] == served and len(served) == 4, served  # extra, epochs, batchsize, nodes
    assert "the local backend" in answer["checked"]


def test_cancel_is_idempotent_and_a_finished_run_is_a_409(api: Api) -> None:
    run = new_run(api)
    canceled = api.call("POST", f"/api/runs/{run['id']}/cancel")
    assert canceled.status == 202
    assert canceled.json()["state"] in ("CANCEL_REQUESTED", "CANCELED")
    assert api.call("POST", f"/api/runs/{run['id']}/cancel").status == 202
    rejected = api.submit(manifest(unique("cancel"), compute={"nodes": 0})).json()["run"]
    refused = api.call("POST", f"/api/runs/{rejected['id']}/cancel")
    assert refused.status == 409
    assert refused.json()["state"] == "REJECTED"


def test_an_unexpected_failure_is_a_500_problem_with_a_correlation_id_and_no_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**_: Any) -> None:
        raise RuntimeError("TableEndpoint=http://secret AccountKey=abc")

    monkeypatch.setattr(api.service.store, "page_of_runs", broken)
    response = api.call("GET", "/api/runs")
    assert response.status == 500
    problem = response.json()
    assert problem["correlation_id"] in problem["detail"]
    assert b"secret" not in response.body and b"RuntimeError" not in response.body


def test_health_says_storage_is_unreachable_without_its_internals(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> None:
        raise ConnectionError("http://127.0.0.1:10002 AccountKey=abc refused")

    monkeypatch.setattr(api.service.store, "list_clusters", unreachable)
    response = api.call("GET", "/api/health")
    assert response.status == 503
    assert response.json()["status"] == "unhealthy"
    assert b"AccountKey" not in response.body


# ------------------------------------------------------------------------------------ logs and metrics


def test_logs_follow_from_an_offset_and_tail_the_last_lines(api: Api) -> None:
    run = new_run(api)
    files = RunFiles(api.service.settings.runs_container, f"{run['job']}/{run['id']}/")
    empty = api.call("GET", f"/api/runs/{run['id']}/logs")
    assert (empty.status, empty.body, empty.headers["x-log-next-offset"]) == (200, b"", "0")

    written: list[bytes] = []

    def write() -> None:
        for i in range(30):
            line = f"epoch {i} é\n".encode()
            api.service.data.append(files.container, files.log, line)
            written.append(line)

    writer = threading.Thread(target=write)
    writer.start()
    received, offset = b"", 0

    def caught_up() -> bool:
        nonlocal received, offset
        reply = api.call("GET", f"/api/runs/{run['id']}/logs?offset={offset}")
        assert int(reply.headers["x-log-offset"]) == offset
        received += reply.body
        offset = int(reply.headers["x-log-next-offset"])
        return not writer.is_alive() and offset == len(b"".join(written))

    wait_for(caught_up, what="the follower to read every line")
    writer.join()
    assert received == b"".join(written)
    assert received.decode().count("é") == 30

    tail = api.call("GET", f"/api/runs/{run['id']}/logs?tail=2")
    assert tail.body == b"".join(written[-2:])
    assert int(tail.headers["x-log-offset"]) == len(received) - len(tail.body)
    assert tail.headers["x-run-state"] == run["state"]
    assert api.call("GET", f"/api/runs/{run['id']}/logs?tail=2&offset=0").status == 400

    for past in (len(received), len(received) + 1, MAX_LOG_OFFSET):  # at or past the end: nothing yet, as documented
        reply = api.call("GET", f"/api/runs/{run['id']}/logs?offset={past}")
        assert (reply.status, reply.body, reply.headers["x-log-next-offset"]) == (200, b"", str(past))
        assert reply.headers["x-log-size"] == str(len(received))


def epochs_shown(api: Api, path: str, count: int) -> bool:
    return len(api.call("GET", path).json()["epochs"]) == count


def test_metrics_are_visible_per_epoch_while_training_then_final(api: Api, tmp_path: Path) -> None:
    run = new_run(api)
    path = f"/api/runs/{run['id']}/metrics"
    assert api.call("GET", path).json() == {"run_id": run["id"], "state": run["state"], "epochs": [], "final": None}
    files = RunFiles(api.service.settings.runs_container, f"{run['job']}/{run['id']}/")
    rows = [{"epoch": 1, "loss": 0.9, "accuracy": 0.5}, {"epoch": 2, "loss": 0.4, "accuracy": 0.8}]
    # What the local job supervisor runs beside the trainer, which rewrites metrics.jsonl after each epoch.
    with LiveMetrics(api.service.data, files, tmp_path, interval=0.05):
        for done in (1, 2):
            (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:done]))
            wait_for(functools.partial(epochs_shown, api, path, done), what=f"epoch {done} to show")
    api.service.data.write(files.container, files.output("metrics.json"), b'{"accuracy": 0.8}')
    assert api.call("GET", path).json() == {
        "run_id": run["id"],
        "state": run["state"],
        "epochs": rows,
        "final": {"accuracy": 0.8},
    }


# ---------------------------------------------------------------------------------- lists and models


def test_lists_keep_their_first_shapes(api: Api) -> None:
    run = new_run(api)
    runs = api.call("GET", "/api/runs?limit=500").json()
    assert run["id"] in [r["id"] for r in runs["runs"]]
    jobs = api.call("GET", "/api/jobs").json()["jobs"]
    assert next(j for j in jobs if j["name"] == run["job"])["manifest"]["trainer"]["args"] == {"epochs": 1}
    assert "clusters" in api.call("GET", "/api/clusters").json()
    window = api.call("GET", f"/api/jobs/{run['job']}/window")
    assert window.status == 200 and window.json()["action"] == "idle"


def test_model_versions_and_lineage(api: Api) -> None:
    run = api.call("GET", f"/api/runs/{new_run(api)['id']}").json()
    name = run["job"]
    api.service.store.add_model_version(
        ModelVersion(
            name=name,
            version=1,
            run_id=run["id"],
            snapshot_id=run["snapshot_id"],
            manifest_hash=run["manifest_hash"],
            artifact=run["outputs"]["model"],
            metrics={"accuracy": 0.9},
            registered_at=datetime.now(UTC),
        )
    )
    versions = api.call("GET", f"/api/models/{name}").json()
    assert (versions["current"], [v["version"] for v in versions["versions"]]) == (None, [1])
    lineage = api.call("GET", f"/api/models/{name}/versions/1").json()
    assert (lineage["run"]["id"], lineage["snapshot"]["id"]) == (run["id"], run["snapshot_id"])
    assert api.call("GET", f"/api/models/{name}/versions/2").status == 404
    assert name in [m["name"] for m in api.call("GET", "/api/models").json()["models"]]


def test_a_watching_job_without_data_is_accepted_as_waiting_and_points_at_its_window(api: Api) -> None:
    name = unique("waits")
    watching = manifest(name, retrain={"on_data_arrival": True, "debounce": "1m"})
    response = api.submit(watching)
    body = response.json()
    assert (response.status, body["run"], body["created"], body["waiting"], body["job"]) == (
        202,
        None,
        False,
        True,
        name,
    )
    assert f"datasets/{name}/ holds no blobs" in body["reason"]
    assert response.headers["location"] == f"/api/jobs/{name}/window"
    assert api.call("GET", f"/api/runs?job={name}").json()["runs"] == []
    window = api.call("GET", response.headers["location"]).json()
    assert (window["action"], window["blockers"]) == ("idle", []) and window["next"].startswith("nothing until")


def test_run_history_hides_refused_transitions_unless_all_is_asked(api: Api) -> None:
    run = new_run(api)
    api.call("POST", f"/api/runs/{run['id']}/cancel")
    stored = api.service.get_run(run["id"])
    assert stored.state is RunState.CANCELED
    late = stored.moved(RunState.RUNNING, cause="backend:late", at=datetime.now(UTC))  # refused: recorded, not applied
    api.service.store.save_run(late)
    shown = api.call("GET", f"/api/runs/{run['id']}").json()["history"]
    everything = api.call("GET", f"/api/runs/{run['id']}?all=true").json()["history"]
    assert all(row["applied"] for row in shown) and [row["to"] for row in shown][-1] == "CANCELED"
    assert everything[-1]["applied"] is False and everything[-1]["to"] == "RUNNING"
    assert [row for row in everything if row["applied"]] == shown

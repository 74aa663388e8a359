"""The fake Azure ML service answers in the shapes of Azure's REST spec (issue 12: every fake behaviour has a source).

`tests/fixtures/aml/rest_schemas.json` holds the response schemas of the operations the fake serves,
resolved from Azure/azure-rest-api-specs (see the fixtures' README). The spec's own x-ms-examples
validate against them, which checks the resolution; then a backend session against the fake is
recorded and every reply of those operations, errors included, is validated the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from jsonschema import Draft202012Validator, validators

from aztrain.adapters.compute.azureml import AzureMLBackend, connect
from aztrain.domain.manifest import ComputeSpec
from aztrain.domain.records import ModelVersion
from tests.fakes.aml_service import ARM, PROVISION_SECONDS, FakeAzureML, FakeCredential
from tests.unit.test_azureml_backend import submission, workspace_settings

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")  # azure-ai-ml's schemas

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aml"
SCHEMAS = json.loads((FIXTURES / "rest_schemas.json").read_text())
WS = r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+"
#: (method, path) → the operation in the fixture whose responses it must match.
OPERATIONS = [
    ("PUT", re.compile(f"{WS}/computes/[^/]+$"), "Compute_CreateOrUpdate@2023-08-01-preview"),
    ("GET", re.compile(f"{WS}/computes/[^/]+$"), "Compute_Get@2023-08-01-preview"),
    ("POST", re.compile(f"{WS}/computes/[^/]+/listNodes$"), "Compute_ListNodes@2023-08-01-preview"),
    ("PUT", re.compile(f"{WS}/jobs/[^/]+$"), "Jobs_CreateOrUpdate@2024-01-01-preview"),
    ("GET", re.compile(f"{WS}/jobs/[^/]+$"), "Jobs_Get@2024-01-01-preview"),
    ("POST", re.compile(f"{WS}/jobs/[^/]+/cancel$"), "Jobs_Cancel@2023-04-01-preview"),
    ("PUT", re.compile(f"{WS}/models/[^/]+/versions/[^/]+$"), "ModelVersions_CreateOrUpdate@2023-08-01-preview"),
]
#: The spec's examples of those operations (copied from the spec, MIT): (file, operation, status).
EXAMPLES = [
    ("2023-08-01-preview/Compute/createOrUpdate/BasicAmlCompute.json", "Compute_CreateOrUpdate", "200"),
    ("2023-08-01-preview/Compute/createOrUpdate/AmlCompute.json", "Compute_CreateOrUpdate", "200"),
    ("2023-08-01-preview/Compute/listNodes.json", "Compute_ListNodes", "200"),
    ("2024-01-01-preview/Job/CommandJob/createOrUpdate.json", "Jobs_CreateOrUpdate", "201"),
    ("2024-01-01-preview/Job/CommandJob/get.json", "Jobs_Get", "200"),
    ("2023-08-01-preview/Workspace/ModelVersion/createOrUpdate.json", "ModelVersions_CreateOrUpdate", "200"),
]


def _properties(validator: Any, properties: dict[str, Any], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """JSON Schema's `properties`, except that an optional property may be null.

    ARM answers null for an optional property that is not set, where the spec does not say
    `x-nullable`: the spec's own example Compute/createOrUpdate/AmlCompute.json answers
    `"virtualMachineImage": null`. A required property may not be null.
    """
    if not validator.is_type(instance, "object"):
        return
    required = set(schema.get("required", ()))
    for name, subschema in properties.items():
        if name in instance and (instance[name] is not None or name in required):
            yield from validator.descend(instance[name], subschema, path=name, schema_path=name)


ArmValidator = validators.extend(Draft202012Validator, {"properties": _properties})


def problems(operation: str, status: int, body: Any, headers: dict[str, str]) -> list[str]:
    """Where a reply departs from the operation's response (the `default` one for an undeclared status)."""
    responses = SCHEMAS["operations"][operation]
    response = responses.get(str(status), responses["default"])
    found = []
    if response["schema"] is None:
        found += [] if body is None else [f"{status} has no body in the spec, got {body!r}"]
    else:
        validator = ArmValidator({"$defs": SCHEMAS["$defs"], **response["schema"]})
        found += [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
    for name, schema in response.get("headers", {}).items():
        value: Any = headers.get(name)
        if value is not None and schema.get("type") == "integer":
            value = int(value)
        found += [f"header {name}: {e.message}" for e in Draft202012Validator(schema).iter_errors(value)]
    return found


def operation_of(method: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.hostname != ARM:
        return None
    return next((op for verb, path, op in OPERATIONS if verb == method and path.match(parts.path)), None)


@pytest.mark.parametrize(("example", "operation", "status"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_the_specs_own_examples_validate_against_the_resolved_schemas(example, operation, status):
    document = json.loads((FIXTURES / "examples" / example).read_text())
    operation = f"{operation}@{example.split('/')[0]}"
    response = document["responses"][status]
    assert problems(operation, int(status), response["body"], response.get("headers", {})) == []


def test_a_reply_the_spec_does_not_allow_is_caught():
    """The check has teeth: a status outside the enum, an error code not a string, a Retry-After out of range."""
    assert problems("Jobs_Get@2024-01-01-preview", 200, {"properties": {"jobType": "Command", "status": "Done"}}, {})
    assert problems("Jobs_Get@2024-01-01-preview", 404, {"error": {"code": 404}}, {})
    assert problems("Jobs_Cancel@2023-04-01-preview", 202, None, {"Retry-After": "5"})  # the spec says 10-600


@pytest.fixture
def fake() -> Iterator[FakeAzureML]:
    service = FakeAzureML()
    with service.patch_blob_uploads():
        yield service
    assert service.unhandled == []


def test_every_reply_of_the_fake_to_the_backend_matches_the_spec(fake):
    settings = workspace_settings()
    backend = AzureMLBackend(
        settings, client=connect(settings, credential=FakeCredential(), transport=fake.transport())
    )
    spec = backend.cluster_for(ComputeSpec(nodes=2))
    backend.ensure_cluster(spec)  # create: 201
    fake.advance(PROVISION_SECONDS)
    fake.clusters[spec.name].scale.update(minNodeCount=1)
    backend.ensure_cluster(spec)  # update: 200
    job_id = backend.submit(submission(spec))  # create job: 201
    fake.set_status(job_id, "Running")
    assert backend.cluster_nodes(spec.name) == 2  # list nodes, with nodes
    backend.cancel(job_id)  # 202
    backend.cancel(job_id)  # refused: CancelRequested
    fake.advance(5)
    backend.observe(job_id)  # get job: Canceled
    other = backend.submit(submission(spec, "8232054399980-d4e5f6", distribution="pytorch"))  # a PyTorch job
    fake.preempt(other)
    assert backend.observe(other).preempted
    backend.observe("aztrain-8232054399970-000000")  # get job: 404
    backend.cluster_nodes("aztrain-missing")  # list nodes: 404
    model = ModelVersion(
        name="digits",
        version=1,
        run_id="8232054399990-a1b2c3",
        snapshot_id="snap",
        manifest_hash="ab" * 32,
        artifact="runs/digits/8232054399990-a1b2c3/outputs/model.pt",
        metrics={"accuracy": 0.9},
        registered_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    backend.publish_model(model)  # create model version: 201
    backend.publish_model(model)  # again: 200

    checked: dict[str, set[int]] = {}
    for method, url, reply in fake.replies:
        operation = operation_of(method, url)
        if operation is None:
            continue
        assert problems(operation, reply.status, reply.body, reply.headers) == [], f"{method} {url} ({reply.status})"
        api_version = parse_qs(urlsplit(url).query)["api-version"][0]
        checked.setdefault(f"{operation.split('@')[0]} {api_version}", set()).add(reply.status)
    assert checked == {
        "Compute_CreateOrUpdate 2023-08-01-preview": {200, 201},
        "Compute_Get 2023-08-01-preview": {200, 404},
        "Compute_ListNodes 2023-08-01-preview": {200, 404},
        "Jobs_CreateOrUpdate 2025-01-01-preview": {201},  # what azure-ai-ml 1.35.2 sends; its spec is not kept
        "Jobs_Get 2024-01-01-preview": {200, 404},
        "Jobs_Cancel 2023-04-01-preview": {202, 400},
        "ModelVersions_CreateOrUpdate 2023-08-01-preview": {200, 201},
    }

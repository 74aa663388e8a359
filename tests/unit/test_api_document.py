"""The OpenAPI document allows exactly what the service accepts, for the values the service constrains itself.

Schemathesis (tests/integration/test_api_fuzz.py) checks the served document from outside; these pin
the rules the document derives from the models, so a rule changed in one place shows in the other.
"""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from aztrain.api.models import LogsQuery, PageQuery, RunQuery, RunsQuery
from aztrain.domain.errors import ManifestError
from aztrain.domain.manifest import manifest_from_dict
from functions import http_api

DOCUMENT = http_api._document()


def schema_allows(schema: dict[str, Any], value: object) -> bool:
    validator = Draft202012Validator({**schema, "components": DOCUMENT["components"]})
    return validator.is_valid(value)


def service_accepts_entrypoint(entrypoint: str) -> bool:
    """Whether the entrypoint's syntax is accepted (with a code snapshot; without one only the built-in runs)."""
    document = {"apiVersion": "aztrain/v1", "kind": "TrainingJob", "name": "doc-check", "data": {"container": "d"}}
    try:
        manifest_from_dict({**document, "trainer": {"entrypoint": entrypoint, "code": "code-" + "0" * 24}})
    except ManifestError as refused:
        return not any(problem.field == "trainer.entrypoint" for problem in refused.problems)
    return True


@pytest.mark.parametrize(
    "entrypoint",
    [
        *("trainer.train", "trainer.evaluate", "train.py", "src/train.py", "rm -rf /", "", "trainer.train; ls"),
        *("../x", "../x.py", "/abs.py", "a//b.py", "./x.py", "x.py\n", "a/.py", "a\\b.py"),
    ],
)
def test_the_document_allows_the_entrypoints_the_service_accepts(entrypoint: str) -> None:
    schema = DOCUMENT["components"]["schemas"]["TrainerSpec"]["properties"]["entrypoint"]
    assert schema_allows(schema, entrypoint) == service_accepts_entrypoint(entrypoint)


def query_schema(path: str, name: str, method: str = "get") -> dict[str, Any]:
    parameters = DOCUMENT["paths"][path][method]["parameters"]
    schema: dict[str, Any] = next(p["schema"] for p in parameters if p["name"] == name)
    return schema


def documented(schema: dict[str, Any], sent: str) -> bool:
    """`sent` is the query form of a value the schema allows: decimal digits for an integer, true/false."""
    forms: dict[str, Any] = {"integer": int, "boolean": {"true": True, "false": False}.__getitem__}
    try:
        value = forms.get(schema["type"], str)(sent)
    except (ValueError, KeyError):
        return False
    canonical = str(value).lower() if schema["type"] != "string" else value
    return bool(canonical == sent and schema_allows(schema, value))


@pytest.mark.parametrize(
    ("model", "path", "name", "sent", "meant"),
    [
        (RunQuery, "/api/runs/{run_id}", "all", "true", True),
        (RunQuery, "/api/runs/{run_id}", "all", "false", False),
        *((RunQuery, "/api/runs/{run_id}", "all", sent, None) for sent in ("", "1", "yes", "True", "on")),
        (PageQuery, "/api/jobs", "limit", "7", 7),
        *((PageQuery, "/api/jobs", "limit", sent, None) for sent in ("", "0", "1.0", " 5", "+5", "1_0")),
        *((PageQuery, "/api/jobs", "continuation", sent, None) for sent in ("", "a b", "x" * 513)),
        (RunsQuery, "/api/runs", "job", "digits", "digits"),
        (RunsQuery, "/api/runs", "job", "", None),
        (LogsQuery, "/api/runs/{run_id}/logs", "offset", "0", 0),
        *((LogsQuery, "/api/runs/{run_id}/logs", "offset", sent, None) for sent in ("", "-1", "1.5")),
    ],
)
def test_a_query_value_is_taken_exactly_when_the_document_allows_it(model, path, name, sent, meant) -> None:
    try:
        taken = getattr(model.model_validate({name: sent}), name)
    except ValidationError:
        taken = None
    assert (taken, documented(query_schema(path, name), sent)) == (meant, meant is not None)


def test_states_are_taken_as_the_document_spells_them() -> None:
    assert RunsQuery.model_validate({"state": "RUNNING,FAILED"}).state == ["RUNNING", "FAILED"]
    assert RunsQuery.model_validate({"state": ""}).state == []  # no filter: an empty array
    for spelled in ("running", "RUNNING,", " RUNNING"):
        with pytest.raises(ValidationError):
            RunsQuery.model_validate({"state": spelled})

"""The served OpenAPI document is exact: Schemathesis generates requests from it and checks every reply.

Against `function_app` on the dev host (Azurite, timers off, local clusters that never come up, so a
submitted run stays put and nothing trains), with a fixed seed and a bounded number of examples per
operation. The checks: no server error; every status, content type and body is one the document lists
for that operation; a request the document forbids is refused (4xx); and every method a path does not
declare is a 405 with `Allow`. The run must find nothing.

Not checked: that every request the schema allows is accepted. The schema cannot say that a
continuation token is one this API issued, that `offset` and `tail` exclude each other, or what
a trainer's own arguments are; those are 400s (or a 422) the document lists and describes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.apps import hosted_app

pytestmark = [pytest.mark.azurite, pytest.mark.fuzz]

SEED = 21
#: Per operation and phase: enough to reach each parameter's edges, within about a minute on two cores.
MAX_EXAMPLES = 15
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
)
#: The methods a Functions HTTP trigger can declare (QUERY is not one; HEAD and OPTIONS are answered too).
UNEXPECTED_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "TRACE")


def fuzz_config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "cache": {"enabled": False},  # no replay of an earlier run's failures: each run is the same run
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True, "unexpected-methods": list(UNEXPECTED_METHODS)},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{check: {"enabled": True} for check in CHECKS}},
        }
    )


@pytest.fixture(scope="module")
def api_schema(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AZTRAIN_LOCAL_PROVISION_SECONDS", "86400")
        state_dir = tmp_path_factory.mktemp("fuzz-local")
        with hosted_app(azurite, table_prefix="fuzz" + uuid.uuid4().hex[:8], state_dir=state_dir) as (host, _):
            yield schemathesis.openapi.from_url(f"{host.url}/api/openapi.json", config=fuzz_config())


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_the_api_does_what_its_document_says(case: schemathesis.Case) -> None:
    case.call_and_validate()

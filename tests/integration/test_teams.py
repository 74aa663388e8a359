"""Teams on the dev host, end to end: two users in two teams, signed in as App Service Authentication would.

The CLI's client names a user (`--user`); the dev host injects that user's `X-MS-CLIENT-PRINCIPAL`
from its users file, and the function app reads only that header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aztrain.api.principal import HEADER, encode
from aztrain.cli.client import ApiError, Client
from aztrain.cli.main import main
from aztrain.domain.identity import ADMIN
from devhost.identity import LocalUsers
from tests.apps import hosted_app

pytestmark = pytest.mark.azurite

USERS = """
[users.alice]
roles = ["Runs.Submit", "Team.vision"]
[users.bob]
roles = ["Runs.Submit", "Team.nlp"]
[users.carol]
roles = ["Team.vision"]
[users.root]
roles = ["Admin"]
"""


@pytest.fixture(scope="module")
def stack(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    """The function app on the dev host with the users above; local clusters never come up, so runs stay put."""
    state_dir = tmp_path_factory.mktemp("teams")
    users_file = state_dir / "users.toml"
    users_file.write_text(USERS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AZTRAIN_LOCAL_PROVISION_SECONDS", "86400")
        prefix = "teams" + uuid.uuid4().hex[:8]
        with hosted_app(azurite, table_prefix=prefix, state_dir=state_dir, users=LocalUsers.load(users_file)) as (
            host,
            service,
        ):
            yield host.url, service


def manifest(name: str, **fields: Any) -> bytes:
    document = {
        "apiVersion": "aztrain/v1",
        "kind": "TrainingJob",
        "name": name,
        "data": {"container": "datasets", "prefix": f"{name}/"},
        "trainer": {"args": {"epochs": 1}},
        **fields,
    }
    return json.dumps(document).encode()


def submitted(stack: tuple[str, Any], user: str, **fields: Any) -> dict[str, Any]:
    url, service = stack
    name = f"job-{uuid.uuid4().hex[:8]}"
    service.data.write("datasets", f"{name}/a.csv", b"1,2\n")
    return dict(Client(url, user=user).submit(manifest(name, **fields))["run"])


def test_each_run_says_who_submitted_it_and_for_which_team(stack: tuple[str, Any]) -> None:
    alices, bobs = submitted(stack, "alice"), submitted(stack, "bob")
    shown = Client(stack[0], user="bob").run(alices["id"])
    assert (shown["submitted_by"], shown["team"]) == ("alice", "vision")
    assert (bobs["submitted_by"], bobs["team"]) == ("bob", "nlp")


def test_a_user_cannot_cancel_another_teams_run(stack: tuple[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    run = submitted(stack, "alice")
    with pytest.raises(ApiError) as refused:
        Client(stack[0], user="bob").cancel(run["id"])
    assert refused.value.status == 403
    assert refused.value.body["missing"] == "app role Team.vision"
    assert "bob may not cancel runs of team vision" in refused.value.message
    # The CLI says the same, and the run is untouched.
    assert main(["--url", stack[0], "--user", "bob", "cancel", run["id"]]) != 0
    assert "app role Team.vision" in capsys.readouterr().err
    assert Client(stack[0], user="alice").run(run["id"])["state"] not in ("CANCEL_REQUESTED", "CANCELED")
    assert Client(stack[0], user="alice").cancel(run["id"])["state"] in ("CANCEL_REQUESTED", "CANCELED")


def test_an_admin_may_cancel_any_run(stack: tuple[str, Any]) -> None:
    run = submitted(stack, "bob")
    assert Client(stack[0], user="root").cancel(run["id"])["state"] in ("CANCEL_REQUESTED", "CANCELED")


def test_submitting_needs_the_submit_role_and_a_team_of_ones_own(stack: tuple[str, Any]) -> None:
    with pytest.raises(ApiError) as reader:
        submitted(stack, "carol")
    assert (reader.value.status, reader.value.body["missing"]) == (403, "app role Runs.Submit")
    with pytest.raises(ApiError) as other_team:
        submitted(stack, "alice", team="nlp")
    assert (other_team.value.status, other_team.value.body["missing"]) == (403, "app role Team.nlp")
    assert submitted(stack, "root", team="nlp")["team"] == "nlp"


def test_the_dev_host_signs_callers_in_and_ignores_a_principal_they_send(stack: tuple[str, Any]) -> None:
    with pytest.raises(ApiError) as unknown:
        Client(stack[0], user="mallory").runs()
    assert unknown.value.status == 401 and "alice" in unknown.value.message
    with pytest.raises(ApiError) as anonymous:
        Client(stack[0]).runs()
    assert anonymous.value.status == 401
    forged = {HEADER: encode("alice", {ADMIN})}
    with pytest.raises(ApiError) as forging:
        Client(stack[0], user="bob").send("POST", f"runs/{submitted(stack, 'alice')['id']}/cancel", headers=forged)
    assert forging.value.status == 403  # bob, not the admin the forged header claims


def test_reading_needs_only_a_signed_in_user(stack: tuple[str, Any]) -> None:
    run = submitted(stack, "alice")
    assert Client(stack[0], user="carol").run(run["id"])["id"] == run["id"]


def test_every_route_says_what_it_needs(stack: tuple[str, Any]) -> None:
    document = Client(stack[0]).send("GET", "openapi.json").json()
    paths = document["paths"].items()
    needs = {f"{m.upper()} {p}": op.get("x-aztrain-access") for p, ops in paths for m, op in ops.items()}
    assert all(needs.values()), [route for route, need in needs.items() if not need]
    assert needs["POST /api/jobs"].startswith("Runs.Submit") and needs["GET /api/health"] == "none"

"""Teams on the dev host, end to end: two users in two teams, signed in as App Service Authentication would.

The CLI's client names a user (`--user`); the dev host injects that user's `X-MS-CLIENT-PRINCIPAL`
from its users file, and the function app reads only that header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aztrain.api.models import RunView
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
[users.erin]
roles = ["Runs.Submit", "Team.robotics"]
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


def submitted(stack: tuple[str, Any], user: str, **fields: Any) -> RunView:
    url, service = stack
    name = f"job-{uuid.uuid4().hex[:8]}"
    service.data.write("datasets", f"{name}/a.csv", b"1,2\n")
    run = Client(url, user=user).submit(manifest(name, **fields)).run
    assert run is not None
    return run


def test_each_run_says_who_submitted_it_and_for_which_team(stack: tuple[str, Any]) -> None:
    alices, bobs = submitted(stack, "alice"), submitted(stack, "bob")
    shown = Client(stack[0], user="bob").run(alices.id)
    assert (shown.submitted_by, shown.team) == ("alice", "vision")
    assert (bobs.submitted_by, bobs.team) == ("bob", "nlp")


def test_a_user_cannot_cancel_another_teams_run(stack: tuple[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    run = submitted(stack, "alice")
    with pytest.raises(ApiError) as refused:
        Client(stack[0], user="bob").cancel(run.id)
    assert refused.value.status == 403
    assert refused.value.body["missing"] == "app role Team.vision"
    assert "bob may not cancel runs of team vision" in refused.value.message
    # The CLI says the same, and the run is untouched.
    assert main(["--url", stack[0], "--user", "bob", "cancel", run.id]) != 0
    assert "app role Team.vision" in capsys.readouterr().err
    assert Client(stack[0], user="alice").run(run.id).state not in ("CANCEL_REQUESTED", "CANCELED")
    assert Client(stack[0], user="alice").cancel(run.id).state in ("CANCEL_REQUESTED", "CANCELED")


def test_an_admin_may_cancel_any_run(stack: tuple[str, Any]) -> None:
    run = submitted(stack, "bob")
    assert Client(stack[0], user="root").cancel(run.id).state in ("CANCEL_REQUESTED", "CANCELED")


def test_submitting_needs_the_submit_role_and_a_team_of_ones_own(stack: tuple[str, Any]) -> None:
    with pytest.raises(ApiError) as reader:
        submitted(stack, "carol")
    assert (reader.value.status, reader.value.body["missing"]) == (403, "app role Runs.Submit")
    with pytest.raises(ApiError) as other_team:
        submitted(stack, "alice", team="nlp")
    assert (other_team.value.status, other_team.value.body["missing"]) == (403, "app role Team.nlp")
    assert submitted(stack, "root", team="nlp").team == "nlp"


def test_the_dev_host_signs_callers_in_and_ignores_a_principal_they_send(stack: tuple[str, Any]) -> None:
    with pytest.raises(ApiError) as unknown:
        Client(stack[0], user="mallory").runs()
    assert unknown.value.status == 401 and "alice" in unknown.value.message
    with pytest.raises(ApiError) as anonymous:
        Client(stack[0]).runs()
    assert anonymous.value.status == 401
    forged = {HEADER: encode("alice", {ADMIN})}
    with pytest.raises(ApiError) as forging:
        Client(stack[0], user="bob").send("POST", f"runs/{submitted(stack, 'alice').id}/cancel", headers=forged)
    assert forging.value.status == 403  # bob, not the admin the forged header claims


def test_reading_needs_only_a_signed_in_user(stack: tuple[str, Any]) -> None:
    run = submitted(stack, "alice")
    assert Client(stack[0], user="carol").run(run.id).id == run.id


def test_every_route_says_what_it_needs(stack: tuple[str, Any]) -> None:
    document = Client(stack[0]).send("GET", "openapi.json").json()
    paths = document["paths"].items()
    needs = {f"{m.upper()} {p}": op.get("x-aztrain-access") for p, ops in paths for m, op in ops.items()}
    assert all(needs.values()), [route for route, need in needs.items() if not need]
    assert needs["POST /api/jobs"].startswith("Runs.Submit") and needs["GET /api/health"] == "none"


def test_the_cost_of_a_placed_run_shows_live_on_the_run_and_in_the_months_report(
    stack: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, service = stack
    run = submitted(stack, "alice", compute={"profile": "gpu-small", "nodes": 1})
    service.reconcile()  # placed: it asks for its nodes (which never come up here), and billing starts
    shown = Client(url, user="alice").run(run.id)
    assert shown.state == "PROVISIONING" and shown.cost is not None
    assert shown.cost.vm_size == "Standard_NC4as_T4_v3" and shown.cost.final is False
    assert shown.cost.node_hour == 0.526  # the committed table's eastus on-demand price
    report = Client(url, user="carol").request("GET", "cost", team="vision")
    assert report["teams"][0]["team"] == "vision" and report["teams"][0]["live"] >= 0
    assert {j["job"] for j in report["jobs"]} >= {run.job}
    assert main(["--url", url, "--user", "carol", "cost", "--by", "job"]) == 0
    assert run.job in capsys.readouterr().out


def test_an_admin_sets_a_teams_gpus_and_its_second_run_waits_with_the_reason_until_the_first_ends(
    stack: tuple[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url, service = stack
    assert main(["--url", url, "--user", "alice", "teams", "set", "robotics", "--gpus", "1"]) != 0  # not an admin
    assert "app role Admin" in capsys.readouterr().err
    assert main(["--url", url, "--user", "root", "teams", "set", "robotics", "--gpus", "1", "--budget", "500"]) == 0
    one_gpu = {"profile": "gpu-small", "nodes": 1}
    try:
        first = submitted(stack, "erin", compute=one_gpu)
        service.reconcile()  # placed: holds its GPU (its nodes never come up here)
        second = submitted(stack, "erin", compute=one_gpu)
        service.reconcile()
        shown = Client(url, user="bob").run(second.id)
        assert (shown.state, shown.waiting_reason) == (
            "QUEUED",
            "team robotics holds 1 of 1 GPUs; this run needs 1",
        )
        assert main(["--url", url, "--user", "bob", "show", second.id]) == 0
        assert "team robotics holds 1 of 1 GPUs" in capsys.readouterr().out
        Client(url, user="erin").cancel(first.id)
        service.reconcile()
        assert Client(url, user="erin").run(second.id).state == "PROVISIONING"
        Client(url, user="erin").cancel(second.id)
    finally:
        assert main(["--url", url, "--user", "root", "teams", "delete", "robotics"]) == 0


def test_a_dry_run_answers_placement_cost_and_admission_without_recording_a_run(
    stack: tuple[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, service = stack
    name = f"dry-{uuid.uuid4().hex[:8]}"
    document = manifest(name, compute={"profile": "gpu-small", "nodes": 2, "max_runtime": "1h"})
    answer = Client(url, user="erin").send("POST", "jobs", document, params={"dry_run": "true"}).json()
    assert answer["dry_run"] is True and answer["team"] == "robotics" and answer["admits_now"] is True
    assert answer["placement"]["vm_size"] == "Standard_NC4as_T4_v3" and answer["placement"]["gpus"] == 2
    assert answer["cost_bound"] == round(2 * 0.526 * 1, 4) and answer["expected_cost"] is None
    assert service.store.get_job(name) is None and service.store.find_runs(job=name) == []
    assert main(["--url", url, "--user", "root", "teams", "set", "robotics", "--gpus", "2"]) == 0
    try:
        holder = submitted(stack, "erin", compute={"profile": "gpu-small", "nodes": 2})
        service.reconcile()
        waits = Client(url, user="erin").send("POST", "jobs", document, params={"dry_run": "true"}).json()
        assert (waits["admits_now"], waits["waiting_reason"]) == (
            False,
            "team robotics holds 2 of 2 GPUs; this run needs 2",
        )
        assert 0 < waits["estimated_wait_seconds"] <= 2 * 3600  # the holder's max_runtime at the latest
        file = tmp_path / "dry.json"
        file.write_bytes(document)
        assert main(["--url", url, "--user", "erin", "submit", str(file), "--dry-run"]) == 0
        printed = capsys.readouterr().out
        assert "nothing recorded" in printed and "would wait: team robotics holds 2 of 2 GPUs" in printed
        assert service.store.find_runs(job=name) == []
        Client(url, user="erin").cancel(holder.id)
    finally:
        assert main(["--url", url, "--user", "root", "teams", "delete", "robotics"]) == 0

"""The signed-in caller: App Service's client principal header, and what each role allows."""

from __future__ import annotations

import base64
import json

import pytest

from aztrain.api.principal import BadPrincipal, decode, encode
from aztrain.domain.errors import Forbidden
from aztrain.domain.identity import Principal


def test_the_header_app_service_writes_reads_back_as_the_user_and_their_roles() -> None:
    principal = decode(encode("alice@contoso.com", {"Runs.Submit", "Team.vision"}))
    assert principal == Principal("alice@contoso.com", frozenset({"Runs.Submit", "Team.vision"}))
    assert principal.teams == ("vision",)


def test_the_claim_types_the_payload_names_are_used() -> None:
    payload = {
        "auth_typ": "aad",
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
        "claims": [
            {"typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "val": "Bob"},
            {"typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role", "val": "Admin"},
        ],
    }
    principal = decode(base64.b64encode(json.dumps(payload).encode()).decode())
    assert (principal.user, principal.is_admin) == ("Bob", True)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"[]").decode(), encode("", set())])
def test_a_header_that_is_no_principal_is_refused(value: str) -> None:
    with pytest.raises(BadPrincipal):
        decode(value)


def test_a_submitter_in_several_teams_names_one() -> None:
    both = Principal("dana", frozenset({"Runs.Submit", "Team.vision", "Team.nlp"}))
    assert both.submitting_team("nlp") == "nlp"
    with pytest.raises(Forbidden, match="name one in the manifest"):
        both.submitting_team(None)


def test_an_admin_submits_for_any_team_and_without_one_for_the_default() -> None:
    root = Principal("root", frozenset({"Admin"}))
    assert (root.submitting_team("vision"), root.submitting_team(None)) == ("vision", "default")

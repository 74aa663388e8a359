"""Who is calling: the signed-in caller of an HTTP route, from the platform's `X-MS-CLIENT-PRINCIPAL`.

App Service Authentication (Entra ID) signs callers in before a request reaches the app and
injects the header; the dev host does the same for its local users. A route that needs a caller
answers 401 without one; what the caller may do is the service's decision (`Forbidden` -> 403).
Every route says which role it needs (`Access`), in the OpenAPI document and docs/api.md.
"""

from __future__ import annotations

from enum import StrEnum

import azure.functions as func

from aztrain.api.principal import HEADER, BadPrincipal, decode
from aztrain.domain.identity import ADMIN, SUBMITTER, Principal
from functions.problems import ApiProblem


class Access(StrEnum):
    """What a route asks of its caller, in the words docs/api.md uses."""

    PUBLIC = "none"
    SIGNED_IN = "signed in (any role)"
    SUBMIT = f"{SUBMITTER} and membership of the run's team (app role Team.<team>), or {ADMIN}"
    ADMIN = ADMIN


def caller(req: func.HttpRequest) -> Principal:
    """The signed-in caller; a 401 problem when the request carries no (readable) principal."""
    value = req.headers.get(HEADER)
    if not value:
        raise ApiProblem(
            401,
            "unauthenticated",
            f"sign in first: the request carries no {HEADER} (in Azure, App Service Authentication with Entra ID "
            "signs callers in; on the dev host, name a user with aztrain --user or the X-Aztrain-User header)",
        )
    try:
        return decode(value)
    except BadPrincipal as exc:
        raise ApiProblem(401, "unauthenticated", str(exc)) from None

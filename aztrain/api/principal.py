"""The `X-MS-CLIENT-PRINCIPAL` header: App Service Authentication's account of the signed-in caller.

The platform injects it on every authenticated request and strips it from what callers send, so
its presence means the platform signed the caller in (learn.microsoft.com/azure/app-service/
configure-authentication-user-identities, "Decoding the client principal header"): base64 of
`{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}`. The dev host injects the
same header for its local users (devhost/identity.py), so one code path serves both.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aztrain.domain.identity import Principal

HEADER = "X-MS-CLIENT-PRINCIPAL"
#: Names the dev host's user a request acts as (the CLI's `--user`); Azure's platform ignores it.
USER_HEADER = "X-Aztrain-User"
#: Claim types App Service uses for Entra ID when a payload names none.
NAME_CLAIM = "name"
ROLE_CLAIM = "roles"
#: Claims that name the user better than a display name, first found wins.
_USER_CLAIMS = ("preferred_username", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")


class BadPrincipal(ValueError):
    """The header is not a client principal."""


def encode(user: str, roles: frozenset[str] | set[str] | tuple[str, ...], *, auth_typ: str = "aad") -> str:
    """The header's value for `user` with `roles`, as App Service writes it."""
    claims = [{"typ": "preferred_username", "val": user}, {"typ": NAME_CLAIM, "val": user}]
    claims += [{"typ": ROLE_CLAIM, "val": role} for role in sorted(roles)]
    payload = {"auth_typ": auth_typ, "claims": claims, "name_typ": NAME_CLAIM, "role_typ": ROLE_CLAIM}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def decode(value: str) -> Principal:
    """The caller the header describes; `BadPrincipal` if it is not base64 JSON of that shape or names no user."""
    try:
        payload: Any = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        raise BadPrincipal(f"{HEADER} is not base64-encoded JSON") from None
    claims = payload.get("claims") if isinstance(payload, dict) else None
    if not isinstance(claims, list):
        raise BadPrincipal(f"{HEADER} holds no claims")
    pairs = [(c.get("typ"), c.get("val")) for c in claims if isinstance(c, dict)]
    role_typ = payload.get("role_typ") or ROLE_CLAIM
    name_typ = payload.get("name_typ") or NAME_CLAIM
    roles = frozenset(str(v) for t, v in pairs if t in (role_typ, ROLE_CLAIM) and v)
    named = {t: str(v) for t, v in reversed(pairs) if v}
    user = next((named[t] for t in (*_USER_CLAIMS, name_typ) if t in named), "")
    if not user:
        raise BadPrincipal(f"{HEADER} names no user (no {_USER_CLAIMS[0]} or {name_typ} claim)")
    return Principal(user=user, roles=roles)

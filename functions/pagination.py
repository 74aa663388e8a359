"""Continuation-token paging: a page ends with an opaque token naming the key of its last item.

The next page starts after that key, so items added or removed between pages never make a walk
repeat or skip the others (new runs sort first, before any token).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from functions.problems import invalid

T = TypeVar("T")


def page(
    items: Sequence[T], key: Callable[[T], str], *, limit: int, continuation: str | None
) -> tuple[list[T], str | None]:
    """The page of `items` (ordered by `key`) after the token, and the token of the next page (None at the end)."""
    after = _decode(continuation) if continuation else None
    remaining = sorted((item for item in items if after is None or key(item) > after), key=key)
    chosen = remaining[:limit]
    return chosen, _encode(key(chosen[-1])) if len(remaining) > limit else None


def _encode(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def _decode(token: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("after"), str):
        raise invalid("continuation", "not a token this API issued; pass the `next` of the previous page unchanged")
    after: str = decoded["after"]
    return after

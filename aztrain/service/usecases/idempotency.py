"""Idempotency keys: a request retried with its key gets the first answer, and makes one run.

The key claims a run id before the run exists, so a retry (even one racing the first) submits as that
run and the service returns it rather than making another; the first answer is claimed after, and
every retry replays it. A key sent again with a different request is refused (`KeyReused`). Answers
are the entry point's own (an HTTP reply, say), stored as their model's JSON; one the caller does not
`keep` (a rejection: its run never changes, so it is answered the same again) is not stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from aztrain.domain.errors import AztrainError
from aztrain.domain.layout import new_run_id
from aztrain.service.usecases.context import Context

A = TypeVar("A", bound=BaseModel)

#: The claim scopes: a key's run id and request fingerprint, then its first answer.
_RUN_IDS = "http-idempotency"
_ANSWERS = "http-replies"


class KeyReused(AztrainError):
    """An idempotency key came again with a different request."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used for a different request; use a new key for a new request")


@dataclass(frozen=True)
class Once(Generic[A]):
    """The answer to a keyed request, and whether it is the stored answer to an earlier one."""

    answer: A
    replayed: bool


def once(ctx: Context, key: str, request: bytes, answer: Callable[[str], A], *, keep: Callable[[A], bool]) -> Once[A]:
    """`answer(run_id)` for the first request with `key`, and that same answer for every retry of it.

    `request` is what makes two requests the same (hashed, never stored). `KeyReused` if the key's first
    request was another.
    """
    digest = hashlib.sha256(request).hexdigest()[:32]
    run_id, first_digest = ctx.store.claim(_RUN_IDS, key, f"{new_run_id(ctx.now())} {digest}").split(" ", 1)
    if first_digest != digest:
        raise KeyReused()
    mine = answer(run_id)
    if not keep(mine):
        return Once(mine, replayed=False)
    first = type(mine).model_validate_json(ctx.store.claim(_ANSWERS, key, mine.model_dump_json()))
    return Once(first, replayed=first != mine)

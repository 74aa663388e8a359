"""Idempotency keys in the service: one run id per key, the first answer replayed, a reused key refused."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from aztrain.adapters.memory import FakeComputeBackend, InMemoryControlStore, InMemoryDataStore
from aztrain.service.facade import ControlPlane, KeyReused
from aztrain.service.settings import Settings
from tests.clock import Clock


class Reply(BaseModel):
    run_id: str
    attempt: int
    ok: bool = True


@pytest.fixture
def plane() -> ControlPlane:
    return ControlPlane(
        settings=Settings(),
        store=InMemoryControlStore(),
        data=InMemoryDataStore(),
        backend=FakeComputeBackend(),
        now=Clock(),
    )


def test_a_retry_gets_the_first_answer_and_the_same_run_id(plane: ControlPlane) -> None:
    attempts = iter(range(1, 10))

    def answer(run_id: str) -> Reply:
        return Reply(run_id=run_id, attempt=next(attempts))

    first = plane.once("k-1", b"manifest", answer, keep=lambda reply: reply.ok)
    retry = plane.once("k-1", b"manifest", answer, keep=lambda reply: reply.ok)
    assert (first.replayed, retry.replayed) == (False, True)
    assert retry.answer == first.answer and first.answer.attempt == 1  # the retry's own answer is dropped
    other = plane.once("k-2", b"manifest", answer, keep=lambda reply: reply.ok)
    assert other.answer.run_id != first.answer.run_id


def test_an_answer_not_kept_is_answered_anew_for_the_same_run_and_a_reused_key_is_refused(plane: ControlPlane) -> None:
    attempts = iter(range(1, 10))

    def refused(run_id: str) -> Reply:
        return Reply(run_id=run_id, attempt=next(attempts), ok=False)

    first = plane.once("k", b"bad manifest", refused, keep=lambda reply: reply.ok)
    again = plane.once("k", b"bad manifest", refused, keep=lambda reply: reply.ok)
    assert (again.answer.run_id, again.answer.attempt, again.replayed) == (first.answer.run_id, 2, False)
    with pytest.raises(KeyReused):
        plane.once("k", b"another manifest", refused, keep=lambda reply: reply.ok)

"""A host that dies holding a queue message is relieved of it: the message is delivered again and the run converges.

Its own module, so its dev host is the only one alive: hosts on one Azurite share its queues, and a host
nested inside another test's would take the messages meant for it (and swap the process-wide service).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aztrain.adapters.memory import FakeComputeBackend
from aztrain.service import faults
from tests.apps import hosted_app
from tests.integration.test_http_api import Api
from tests.reliability.conftest import assert_converged, blob_created, drop_manifest, enqueue, settle

pytestmark = pytest.mark.azurite


@pytest.fixture
def leased(azurite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The app on the dev host whose queue messages are held for 2 s only: a host that hangs is relieved of them."""
    prefix = "crash" + uuid.uuid4().hex[:8]
    state_dir = tmp_path_factory.mktemp("crash-local")
    backend = FakeComputeBackend(provision_polls=0)
    with hosted_app(azurite, table_prefix=prefix, state_dir=state_dir, backend=backend, queue_lease=2) as (host, plane):
        yield Api(host.url, host, plane)


def test_a_host_that_dies_between_receiving_a_message_and_acting_on_it_is_relieved_and_the_run_converges(
    leased: Api,
) -> None:
    plane, job = leased.service, f"crashed-{uuid.uuid4().hex[:6]}"
    event = drop_manifest(plane, job)
    frozen, redelivered = threading.Event(), threading.Event()

    def die_once(point: str) -> None:
        if point != "intake.after-job" or frozen.is_set():
            return
        frozen.set()  # the first worker stops here, holding the message, as a host that died would
        redelivered.wait(timeout=60)
        raise faults.InjectedFault(point)  # and never acts: its invocation ends without a run

    def run_made() -> bool:
        if plane.store.find_runs(job=job):
            redelivered.set()
        return redelivered.is_set()

    with faults.injected(die_once):
        enqueue_and_watch(leased, blob_created(event), run_made)
    settle(plane)
    assert frozen.is_set()
    assert_converged(plane, [job])


def enqueue_and_watch(api: Api, event: dict[str, Any], done: Any) -> None:
    """Enqueue `event` in a thread and wait until `done()` (the run the redelivery makes)."""
    writer = threading.Thread(target=enqueue, args=(api, event))
    writer.start()
    deadline = datetime.now(UTC) + timedelta(seconds=90)
    while not done() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.1)
    writer.join(timeout=90)
    assert done(), "the message was never delivered again"

"""The `active` index is read for deciding, so a copy comes back without the outbox its run carries."""

from __future__ import annotations

from datetime import UTC, datetime

from aztrain.adapters.storage.tables import TableControlStore, copy_columns
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState


def test_reading_active_runs_leaves_their_outboxes_on_the_server(run_store_on_azurite: TableControlStore) -> None:
    store = run_store_on_azurite
    at = datetime(2026, 12, 4, tzinfo=UTC)
    run = Run.create(job="outbox-heavy", state=RunState.ACCEPTED, at=at, trigger="http", cause="req-1")
    for state in (RunState.PROVISIONING, RunState.SUBMITTED):  # the topic is down: nothing is drained
        run = run.moved(state, cause="reconciler", at=at, detail="x" * 400)
    store.add_run(run)

    copy = next(r for r in store.find_runs(states=ACTIVE_STATES) if r.id == run.id)
    assert (copy.state, copy.seq, copy.cluster) == (run.state, run.seq, run.cluster)
    assert copy.outbox == ()  # not transferred
    assert [r.id for r in store.unpublished_runs()] == [run.id]  # still found as unpublished
    assert len(store.get_run(run.id).outbox) == 3  # the run itself keeps every event


def test_the_copy_columns_are_every_column_of_a_run_but_its_outbox() -> None:
    assert "Outbox" not in copy_columns()
    assert {"Manifest", "State", "Cluster", "Unpublished", "Job"} <= set(copy_columns())

from datetime import UTC, datetime, timedelta

import pytest

from aztrain.domain.layout import backend_job_name, new_run_id, run_id_of
from aztrain.domain.records import JobPhase
from aztrain.domain.runs import PHASE_STATE, TERMINAL_STATES, TRANSITIONS, Run, RunState, state_for_phase

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_run(state: RunState = RunState.ACCEPTED) -> Run:
    return Run.create(job="digits", state=state, at=T0, trigger="http", cause="test")


def test_terminal_states_have_no_way_out():
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == frozenset()
        assert state.is_terminal


def test_every_non_terminal_state_can_fail_or_be_canceled():
    for state in set(RunState) - TERMINAL_STATES:
        assert RunState.FAILED in TRANSITIONS[state]
        assert state is RunState.CANCEL_REQUESTED or RunState.CANCEL_REQUESTED in TRANSITIONS[state]


def test_allowed_transition_is_applied_and_recorded():
    run = a_run().moved(RunState.PROVISIONING, cause="reconciler", at=T0 + timedelta(seconds=1), cluster="c")
    assert run.state is RunState.PROVISIONING and run.cluster == "c"
    assert run.seq == 2 and run.last is not None and run.last.applied
    assert (run.last.from_state, run.last.to_state) == (RunState.ACCEPTED, RunState.PROVISIONING)


def test_late_event_after_completion_is_recorded_as_ignored_not_applied():
    done = a_run(RunState.RUNNING).moved(RunState.COMPLETED, cause="backend", at=T0)
    late = done.moved(RunState.RUNNING, cause="event-42", at=T0, metrics={"x": 1})
    assert late.state is RunState.COMPLETED and late.metrics == {}
    assert late.last is not None and not late.last.applied
    assert late.last.detail == "ignored: COMPLETED → RUNNING not allowed"


def test_creation_is_the_first_history_row():
    run = a_run()
    assert run.seq == 1 and run.last is not None and run.last.from_state is None


def test_every_job_phase_maps_to_a_run_state_or_to_no_change():
    assert set(PHASE_STATE) == set(JobPhase)
    assert state_for_phase(JobPhase.UNKNOWN) is None
    # A final phase always ends the run (or, for FAILED, lets the preemption rule decide).
    assert {state_for_phase(p) for p in JobPhase if p.is_final} <= TERMINAL_STATES


def test_every_phase_a_backend_reports_is_a_move_the_table_knows():
    targets = {state_for_phase(p) for p in JobPhase} - {None}
    reachable = set().union(*TRANSITIONS.values())
    assert targets <= reachable


def test_run_ids_sort_newest_first():
    older, newer = new_run_id(T0), new_run_id(T0 + timedelta(milliseconds=5))
    assert newer < older


@pytest.mark.parametrize("attempt", [1, 2, 12])
@pytest.mark.parametrize("run_id", ["8232774399990-a81476", "8232774399990-0fa70f", "8232774399990-a1b2c3"])
def test_a_backend_job_name_leads_back_to_its_run_whatever_the_random_part_looks_like(run_id, attempt):
    """`-a81476` is a run id's random part, not attempt 81476."""
    assert run_id_of(backend_job_name(run_id, attempt)) == run_id

"""Runs and their state machine: the one table every other module asks.

```
REJECTED (terminal: the manifest never became a job)
ACCEPTED → PROVISIONING → SUBMITTED → QUEUED → RUNNING → COMPLETED
    ↘ QUEUED ↗                ↑________/_________/   (preempted: the next attempt is SUBMITTED)
     any non-terminal state → FAILED | CANCEL_REQUESTED → CANCELED
```
ACCEPTED → QUEUED → PROVISIONING is the admission wait: a run that may not take nodes yet
(`service.usecases.admission`) waits in QUEUED, with no backend job, and says why in
`waiting_reason`; the QUEUED after SUBMITTED is the backend's own queue.
A transition the table does not allow (a late "Running" after "Completed") is
recorded in the run's history as ignored and never applied. Backends report
`JobPhase`s; `state_for_phase` is the one map from those onto run states.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from aztrain.domain.cost import Rate
from aztrain.domain.errors import FieldProblem
from aztrain.domain.layout import new_run_id
from aztrain.domain.manifest import JobManifest
from aztrain.domain.records import JobPhase


class RunState(StrEnum):
    """Lifecycle of a run. `is_terminal` states never change again."""

    REJECTED = "REJECTED"
    ACCEPTED = "ACCEPTED"
    PROVISIONING = "PROVISIONING"
    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({RunState.REJECTED, RunState.COMPLETED, RunState.FAILED, RunState.CANCELED})
#: States in which a run holds (or is about to hold) cluster nodes.
ACTIVE_STATES = frozenset(RunState) - TERMINAL_STATES

_ENDINGS = {RunState.FAILED, RunState.CANCEL_REQUESTED}
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.REJECTED: frozenset(),
    # QUEUED: not admitted yet (`Run.awaiting_admission`); PROVISIONING from there once admitted.
    RunState.ACCEPTED: frozenset({RunState.PROVISIONING, RunState.QUEUED, *_ENDINGS}),
    RunState.PROVISIONING: frozenset({RunState.SUBMITTED, *_ENDINGS}),
    # A backend may skip states we never observed (a short job goes Queued→Completed between polls).
    # SUBMITTED again: a preempted job is resubmitted, also one the reconciler never saw running.
    RunState.SUBMITTED: frozenset(
        {RunState.QUEUED, RunState.RUNNING, RunState.COMPLETED, RunState.SUBMITTED, *_ENDINGS}
    ),
    RunState.QUEUED: frozenset(
        {RunState.PROVISIONING, RunState.RUNNING, RunState.COMPLETED, RunState.SUBMITTED, *_ENDINGS}
    ),
    # Back to SUBMITTED only by resubmitting after preemption: no backend status maps to SUBMITTED.
    RunState.RUNNING: frozenset({RunState.COMPLETED, RunState.SUBMITTED, *_ENDINGS}),
    RunState.CANCEL_REQUESTED: frozenset({RunState.CANCELED, RunState.COMPLETED, RunState.FAILED}),
    RunState.COMPLETED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELED: frozenset(),
}


def can_transition(current: RunState, target: RunState) -> bool:
    """True when the table allows moving from `current` to `target`."""
    return target in TRANSITIONS[current]


#: Backend job phases → run states. `None`: the phase says nothing new about the run's life.
PHASE_STATE: dict[JobPhase, RunState | None] = {
    JobPhase.PENDING: RunState.QUEUED,
    JobPhase.RUNNING: RunState.RUNNING,
    JobPhase.STOPPING: RunState.CANCEL_REQUESTED,
    JobPhase.COMPLETED: RunState.COMPLETED,
    JobPhase.FAILED: RunState.FAILED,
    JobPhase.CANCELED: RunState.CANCELED,
    JobPhase.UNKNOWN: None,
}


def state_for_phase(phase: JobPhase) -> RunState | None:
    """The run state a backend job's phase means, or None for "no change"."""
    return PHASE_STATE[phase]


@dataclass(frozen=True)
class Transition:
    """One history row. `applied=False` records a transition the table refused."""

    seq: int
    from_state: RunState | None  # None for the row that records the run's creation
    to_state: RunState
    cause: str
    at: datetime
    applied: bool = True
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "from": self.from_state.value if self.from_state else None,
            "to": self.to_state.value,
            "applied": self.applied,
            "cause": self.cause,
            "at": self.at.isoformat(),
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Transition:
        return cls(
            seq=int(d["seq"]),
            from_state=RunState(d["from"]) if d.get("from") else None,
            to_state=RunState(d["to"]),
            cause=d.get("cause", ""),
            at=datetime.fromisoformat(d["at"]),
            applied=bool(d.get("applied", True)),
            detail=d.get("detail", ""),
        )


@dataclass(frozen=True)
class Staged:
    """An applied transition in the run's outbox, with the run's fields as the transition left them.

    So an event published late (after an outage) says what was true then, not what is true now.
    """

    transition: Transition
    attempt: int
    backend_job_id: str
    snapshot_id: str
    cluster: str

    @classmethod
    def of(cls, run: Run, transition: Transition) -> Staged:
        return cls(transition, run.attempt, run.backend_job_id, run.snapshot_id, run.cluster)

    def to_json(self, *, max_detail: int) -> dict[str, Any]:
        step = {**self.transition.to_json(), "detail": self.transition.detail[:max_detail]}
        fields = {"attempt": self.attempt, "backend_job_id": self.backend_job_id, "snapshot_id": self.snapshot_id}
        return {**step, **fields, "cluster": self.cluster}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Staged:
        return cls(Transition.from_json(d), int(d["attempt"]), d["backend_job_id"], d["snapshot_id"], d["cluster"])


@dataclass(frozen=True)
class Run:
    """One execution of a job. Stored in the `runs` table (PartitionKey=job, RowKey=id)."""

    id: str
    job: str
    state: RunState
    created_at: datetime
    updated_at: datetime
    trigger: str  # "manifest" | "http" | "data"
    cause: str  # event id or request id that created it
    correlation: str = ""  # followed from the request or upload through history, job tags, logs and events
    manifest_hash: str = ""
    spec: JobManifest | None = None  # None only for REJECTED runs: their manifest never validated
    source: str = ""  # blob path or "http"
    cluster: str = ""
    backend_job_id: str = ""
    snapshot_id: str = ""  # the immutable list of blobs this run reads (taken when it leaves ACCEPTED)
    attempt: int = 1
    #: Why a run in QUEUED is not admitted yet (a quota, a team's share); None once it may take nodes.
    waiting_reason: str | None = None
    error: str = ""
    #: A REJECTED run's manifest problems, each field and its fix (`error` says the same in words).
    problems: tuple[FieldProblem, ...] = ()
    team: str = ""  # whose quota and budget it uses (docs/teams.md); "" only for rows stored before teams
    submitted_by: str = ""  # the signed-in user who submitted it; "" for a dropped manifest or a retraining run
    priority: int = 0  # its place among its team's waiting runs, higher first
    placed_at: datetime | None = None  # when it asked for its nodes (entered PROVISIONING): billing starts
    rate: Rate | None = None  # what its nodes cost an hour, fixed when it was placed (`aztrain.domain.cost`)
    metrics: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    last: Transition | None = None
    #: The outbox: applied transitions not yet published, written in the same conditional write as each one.
    outbox: tuple[Staged, ...] = ()
    etag: str | None = None  # set by the store; None means "not stored yet"

    @classmethod
    def create(cls, *, job: str, state: RunState, at: datetime, trigger: str, cause: str, **fields: Any) -> Run:
        """A new run whose history starts with its creation."""
        first = Transition(seq=1, from_state=None, to_state=state, cause=cause, at=at, detail=fields.get("error", ""))
        run = cls(
            id=fields.pop("id", None) or new_run_id(at),
            job=job,
            state=state,
            created_at=at,
            updated_at=at,
            trigger=trigger,
            cause=cause,
            correlation=fields.pop("correlation", None) or cause,
            seq=1,
            last=first,
            **fields,
        )
        return replace(run, outbox=(Staged.of(run, first),))

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    @property
    def awaiting_admission(self) -> bool:
        """Waiting in QUEUED to be admitted: no backend job has been asked for yet."""
        return self.state is RunState.QUEUED and not self.backend_job_id

    @property
    def manifest(self) -> JobManifest:
        """The validated manifest this run executes (every run past REJECTED has one)."""
        if self.spec is None:
            raise ValueError(f"run {self.id} is {self.state.value}: it has no manifest")
        return self.spec

    def moved(self, target: RunState, *, cause: str, at: datetime, detail: str = "", **changes: Any) -> Run:
        """The run after an attempted transition. Refused transitions only add a history row.

        A move out of the admission wait ends its reason, unless `changes` gives the next one.
        """
        allowed = can_transition(self.state, target)
        step = Transition(
            seq=self.seq + 1,
            from_state=self.state,
            to_state=target,
            cause=cause,
            at=at,
            applied=allowed,
            detail=detail if allowed else (detail or f"ignored: {self.state.value} → {target.value} not allowed"),
        )
        if not allowed:
            return replace(self, seq=step.seq, last=step, updated_at=at)
        changes.setdefault("waiting_reason", None)
        moved = replace(self, state=target, seq=step.seq, last=step, updated_at=at, **changes)
        return replace(moved, outbox=(*self.outbox, Staged.of(moved, step)))

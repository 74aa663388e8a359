"""The service layer's facade: the entry points triggers and tests call (the CLI calls the HTTP API).

Each method delegates to a use-case module in `aztrain.service.usecases` (intake, idempotency,
progress, retraining, registry, capacity), all sharing one `Context`; reads for display go through
`queries` (`aztrain.service.queries`). Every use case is idempotent and quick: handlers record
intent and take the cheap steps due; `reconcile` is the slow backstop for every lost or late event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel

from aztrain.api.teams import DryRunView
from aztrain.domain.identity import Principal
from aztrain.domain.records import DeadLetter, JobPhase, ModelVersion
from aztrain.domain.retrain import Snapshot, Window
from aztrain.domain.runs import Run
from aztrain.domain.teams import Team
from aztrain.service import views
from aztrain.service.ports import ComputeBackend, ControlStore, DataStore, EventSink, StepRequests
from aztrain.service.queries import AmbiguousRun, InvalidContinuation, Queries
from aztrain.service.settings import Settings
from aztrain.service.usecases import (
    blob_events,
    costing,
    deadletters,
    dryrun,
    idempotency,
    intake,
    progress,
    reconciler,
    registry,
    retraining,
    steps,
    teamadmin,
)
from aztrain.service.usecases.blob_events import BlobEvent
from aztrain.service.usecases.context import Context
from aztrain.service.usecases.idempotency import KeyReused, Once
from aztrain.service.usecases.intake import Submitted
from aztrain.service.usecases.steps import RUN_STEPS_QUEUE

__all__ = [
    "RUN_STEPS_QUEUE",
    "AmbiguousRun",
    "BlobEvent",
    "ControlPlane",
    "InvalidContinuation",
    "KeyReused",
    "Once",
    "Submitted",
]

A = TypeVar("A", bound=BaseModel)


class ControlPlane:
    """Jobs in, runs out, clusters back to zero."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: ControlStore,
        data: DataStore,
        backend: ComputeBackend,
        now: Callable[[], datetime],
        events: EventSink | None = None,
        steps: StepRequests | None = None,
    ) -> None:
        self.ctx = Context(
            settings=settings, store=store, data=data, backend=backend, now=now, events=events, steps=steps
        )

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def queries(self) -> Queries:
        """The read side: what the API shows (runs a page at a time, a run, its log and metrics, ...)."""
        return Queries(self.ctx)

    @property
    def store(self) -> ControlStore:
        return self.ctx.store

    @property
    def data(self) -> DataStore:
        return self.ctx.data

    @property
    def backend(self) -> ComputeBackend:
        return self.ctx.backend

    @property
    def now(self) -> Callable[[], datetime]:
        return self.ctx.now

    # ------------------------------------------------------------------ intake
    def submit(
        self,
        manifest_text: str | bytes,
        *,
        trigger: str,
        cause: str,
        source: str,
        force: bool = False,
        run_id: str | None = None,
        correlation: str = "",
        by: Principal | None = None,
    ) -> Submitted:
        """Accept a manifest and start a run of it; an identical manifest returns its run unless `force`.

        `by`: the signed-in submitter (`Forbidden` if they may not); None for a dropped manifest.
        """
        return intake.submit(
            self.ctx,
            manifest_text,
            trigger=trigger,
            cause=cause,
            source=source,
            force=force,
            run_id=run_id,
            correlation=correlation,
            by=by,
        )

    def once(self, key: str, request: bytes, answer: Callable[[str], A], *, keep: Callable[[A], bool]) -> Once[A]:
        """`answer(run_id)` once per idempotency key: a retry of the same `request` gets the first answer."""
        return idempotency.once(self.ctx, key, request, answer, keep=keep)

    def on_blob_created(self, event: BlobEvent) -> None:
        """A blob landed: a manifest starts its job and run (first steps at once), an upload becomes arrivals."""
        blob_events.on_blob_created(self.ctx, event)

    def dead_letter(self, *, function: str, event_id: str, event_type: str, subject: str, reason: str) -> DeadLetter:
        """Record an event that can never succeed, so its handler can acknowledge it."""
        return deadletters.record(
            self.ctx, function=function, event_id=event_id, event_type=event_type, subject=subject, reason=reason
        )

    # ---------------------------------------------------------------- progress
    def on_job_status(self, backend_job_id: str, phase: JobPhase, *, cause: str) -> Run | None:
        """A backend status event; late or duplicated news is recorded as ignored, never applied."""
        return progress.on_job_status(self.ctx, backend_job_id, phase, cause=cause)

    def on_backend_status(self, backend_job_id: str, status: str, *, cause: str) -> Run | None:
        """A backend's status event in its own words (Azure ML's `runStatus`), mapped by the backend itself."""
        return progress.on_job_status(self.ctx, backend_job_id, self.ctx.backend.phase_of(status), cause=cause)

    def request_steps(self, run: Run | None) -> None:
        """Queue a hint to take a just-submitted run's first steps now; if it cannot be queued, the reconciler will."""
        steps.request(self.ctx, run)

    def take_steps(self, run_id: str) -> Run:
        """A `run-steps` hint: the run's steps due now, none if it is past them (`NotFound` for an unknown run)."""
        return steps.take(self.ctx, run_id)

    def advance(self, run_id: str) -> Run:
        """Take one step for a run from what the backend says now."""
        return progress.advance(self.ctx, run_id)

    def cancel(self, run_id: str, *, cause: str, by: Principal | None = None) -> Run:
        """Ask a run to stop; `InvalidTransition` for finished runs, `Forbidden` if `by` may not cancel it."""
        return progress.cancel(self.ctx, run_id, cause=cause, by=by)

    def get_run(self, run_id: str) -> Run:
        """A run by id, or `NotFound`."""
        return self.ctx.get_run(run_id)

    # -------------------------------------------------------------- retraining
    def window(self, job_name: str) -> Window:
        """A watched job's pending retraining window: arrivals so far, when it fires, or why not."""
        return retraining.window(self.ctx, job_name)

    # ---------------------------------------------------------------- registry
    def snapshot(self, snapshot_id: str) -> Snapshot:
        return registry.snapshot(self.ctx, snapshot_id)

    def lineage(self, name: str, version: int) -> registry.Lineage:
        """model → the run that trained it → the snapshot it was given and the files its trainer read."""
        return registry.lineage(self.ctx, name, version)

    def current_model(self, name: str) -> ModelVersion | None:
        """The latest promoted version of a model."""
        return registry.current_model(self.ctx, name)

    # ------------------------------------------------------------ teams, cost
    def teams(self) -> list[Team]:
        """Every team and its bounds, by name."""
        return self.ctx.store.list_teams()

    def dry_run(self, manifest_text: str | bytes, *, by: Principal) -> DryRunView:
        """What submitting the manifest would do now (placement, cost, admission, wait), recording nothing."""
        return views.dry_run_view(dryrun.dry_run(self.ctx, manifest_text, by=by))

    def set_team(self, team: Team, *, by: Principal) -> Team:
        """Create a team or replace its bounds (admins only: `Forbidden` otherwise)."""
        return teamadmin.set_team(self.ctx, team, by=by)

    def delete_team(self, name: str, *, by: Principal) -> None:
        """Forget a team's bounds (admins only)."""
        teamadmin.delete_team(self.ctx, name, by=by)

    def cost_report(self, month: str | None = None, *, team: str | None = None) -> costing.Report:
        """A month's spend (default: this month's) per team, job and day: its ledger plus active runs' live cost."""
        return costing.report(self.ctx, month, team=team)

    # --------------------------------------------------------------- reconcile
    def reconcile(self) -> None:
        """One reconciler pass: runs advanced, windows acted on, clusters sized, the outbox drained."""
        reconciler.reconcile(self.ctx)

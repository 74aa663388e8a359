"""Outbound events: CloudEvents built from recorded transitions, and the drain that publishes them.

A run's `outbox` is written in the same conditional write as each transition (`Run.moved`), so
an event exists for every applied transition and for none that was refused. `drain` publishes a
run's staged transitions and then clears them, conditionally; the handler drains right after
each write and the reconciler (`drain_pending`) is the backstop for a crash or a topic that was
down. Delivery is at-least-once: a crash after the publish and before the clear sends the same
events again, under the same ids (`<run id>:<seq>[:<kind>]`), for subscribers to dedupe on.

A cluster's `scaled_to_zero` is outboxed the same way on its record: `zero_at` set and not yet
`zero_published_at`. Model events ride on the run's COMPLETED transition (the model version is
stored before it), and `window.fired` on the ACCEPTED transition of a run a data window launched.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from aztrain.domain.cost import month_of
from aztrain.domain.errors import ConcurrencyError
from aztrain.domain.identity import DEFAULT_TEAM
from aztrain.domain.records import ClusterRecord, ModelVersion, OutboundEvent
from aztrain.domain.runs import Run, RunState, Staged, Transition
from aztrain.service import faults, telemetry
from aztrain.service.usecases import costing
from aztrain.service.usecases.context import Context, read_decide_write

log = logging.getLogger(__name__)

PREFIX = "aztrain."
#: Percent of a team's monthly budget whose crossing is an event.
BUDGET_THRESHOLDS = (50, 80, 100)
#: Runs waiting for their turn (the queue depth the reconciler reports).
WAITING = (RunState.ACCEPTED, RunState.PROVISIONING, RunState.SUBMITTED, RunState.QUEUED)


def drain(ctx: Context, run: Run) -> Run:
    """Publish the run's staged events and clear them; if the topic fails they stay for the reconciler."""
    if not run.outbox:
        return run
    if run.is_terminal:  # its final cost is in the ledger before the event that it ended is sent
        try:
            costing.record_final(ctx, run)
        except Exception as exc:  # the events wait with it: the backstop records and sends them later
            log.warning("run %s: final cost not recorded yet: %s", run.id, exc)
            return run
    upto = run.outbox[-1].transition.seq
    events = run_events(ctx, run)
    faults.checkpoint("publishing.before-publish")
    if ctx.events is not None:
        try:
            ctx.events.publish(events)
        except Exception as exc:  # any failure of the topic: the transition stands, the events wait
            log.warning("run %s: %d event(s) not published yet: %s", run.id, len(run.outbox), exc)
            return run
    faults.checkpoint("publishing.after-publish")

    def published(current: Run) -> Run | None:
        remaining = tuple(s for s in current.outbox if s.transition.seq > upto)
        return None if remaining == current.outbox else replace(current, outbox=remaining)

    try:
        saved, wrote = read_decide_write(
            lambda: ctx.get_run(run.id),
            published,
            ctx.store.save_outbox,
            what=f"outbox of run {run.id}",
            held=run if run.etag else None,  # as just stored: not read again
        )
    except ConcurrencyError:  # busy run: the events are sent again later, under the same ids
        return run
    if wrote:
        ctx.store.refresh_active(saved)  # its copy in the index says no events wait any more
    _measure(run, events)
    return saved


def drain_pending(ctx: Context) -> None:
    """The backstop: every run and cluster with unpublished events; one that fails does not stall the others."""
    telemetry.runs_waiting(lambda: len(ctx.store.find_runs(states=WAITING)))
    for listed in ctx.store.unpublished_runs():
        try:
            run = ctx.get_run(listed.id)  # the listing may be a copy behind the run: drain the run itself
            if run.outbox:
                drain(ctx, run)
            else:  # drained, and a crash before its copy was refreshed
                ctx.store.refresh_active(run)
        except Exception:
            log.exception("run %s: outbox not drained", listed.id)
    for cluster in ctx.store.list_clusters():
        if cluster.zero_at is not None and cluster.zero_published_at != cluster.zero_at:
            _drain_cluster(ctx, cluster)


def _drain_cluster(ctx: Context, cluster: ClusterRecord) -> None:
    if ctx.events is not None:
        try:
            ctx.events.publish([cluster_event(ctx, cluster)])
        except Exception as exc:
            log.warning("cluster %s: scaled_to_zero not published yet: %s", cluster.name, exc)
            return
    ctx.store.put_cluster(replace(cluster, zero_published_at=cluster.zero_at))
    if cluster.seconds_to_zero is not None:
        telemetry.cluster_at_zero(cluster.name, cluster.seconds_to_zero)


def _measure(run: Run, events: list[OutboundEvent]) -> None:
    """Telemetry of transitions just published: runs by state, and GPU node-seconds of a run that ended."""
    for event in events:
        if not event.type.startswith(PREFIX + "run."):
            continue
        state = event.data["state"]
        telemetry.run_entered(state, run.job)
        started = event.data["timings"].get("running")
        if RunState(state).is_terminal and started and run.spec is not None:
            running = (event.time - datetime.fromisoformat(started)).total_seconds()
            telemetry.gpu_node_seconds(run.job, run.cluster, running * run.spec.compute.nodes)


def run_events(ctx: Context, run: Run) -> list[OutboundEvent]:
    """The events of a run's staged transitions, in order (the documented types, docs/events.md)."""
    # The staged rows too: the history row of the latest may not be written yet (it follows the run's).
    # An outbox that still holds the creation row holds every applied transition: no history to read.
    earlier = ctx.store.history(run.id) if run.outbox and run.outbox[0].transition.seq > 1 else []
    steps = {t.seq: t for t in earlier if t.applied}
    steps |= {s.transition.seq: s.transition for s in run.outbox}
    events: list[OutboundEvent] = []
    for staged in run.outbox:
        t = staged.transition
        timings = {steps[seq].to_state.value.lower(): steps[seq].at for seq in sorted(steps) if seq <= t.seq}
        data = _run_data(run, staged, timings)
        if t.from_state is None and run.trigger == "data":
            events.append(_event(ctx, run, t, "window.fired", data, suffix="window.fired"))
        events.append(_event(ctx, run, t, _run_type(t), data))
        if t.to_state is RunState.COMPLETED:
            events.extend(_model_events(ctx, run, t))
        if t.to_state.is_terminal and run.placed_at is not None:
            events.extend(budget_events(ctx, run, t))
    return events


def budget_events(ctx: Context, run: Run, t: Transition) -> list[OutboundEvent]:
    """`aztrain.budget.threshold_crossed` for each of its team's budget thresholds this run's final cost crossed.

    The month's ledger, ordered by end (then run id), says which run's cost crossed a threshold, so each
    threshold is crossed by one run once a month, under one id (`budget:<team>:<month>:<percent>`).
    """
    team = ctx.store.get_team(run.team or DEFAULT_TEAM)
    if team is None or not team.monthly_budget:
        return []
    month = month_of(run.updated_at)
    entries = sorted(ctx.store.costs(month, team.name), key=lambda e: (e.ended_at, e.run_id))
    before = 0.0
    for entry in entries:
        if entry.run_id == run.id:
            after = before + entry.cost
            break
        before += entry.cost
    else:
        return []  # not in the ledger yet: the drain records it first
    crossed = [p for p in BUDGET_THRESHOLDS if before < p / 100 * team.monthly_budget <= after]
    return [
        OutboundEvent(
            id=f"budget:{team.name}:{month}:{percent}",
            type=PREFIX + "budget.threshold_crossed",
            source=ctx.settings.events_source,
            subject=f"teams/{team.name}",
            time=t.at,
            data={
                "team": team.name,
                "month": month,
                "threshold_percent": percent,
                "budget": team.monthly_budget,
                "spent": round(after, 4),
                "run_id": run.id,
                "job": run.job,
            },
            correlation=run.correlation,
            cause=t.cause,
        )
        for percent in crossed
    ]


def cluster_event(ctx: Context, cluster: ClusterRecord) -> OutboundEvent:
    """`aztrain.cluster.scaled_to_zero` for a cluster seen at zero nodes after its last run ended."""
    assert cluster.zero_at is not None
    return OutboundEvent(
        id=f"cluster:{cluster.backend}:{cluster.name}:{cluster.zero_at.isoformat()}",
        type=PREFIX + "cluster.scaled_to_zero",
        source=ctx.settings.events_source,
        subject=f"clusters/{cluster.backend}/{cluster.name}",
        time=cluster.zero_at,
        data={
            "backend": cluster.backend,
            "cluster": cluster.name,
            "scale_down_at": _iso(cluster.last_scale_at),
            "zero_at": _iso(cluster.zero_at),
            "seconds_to_zero": cluster.seconds_to_zero,
        },
        correlation="",
        cause="reconciler",
    )


def _run_type(t: Transition) -> str:
    if t.to_state is RunState.SUBMITTED and t.from_state is not RunState.PROVISIONING:
        return "run.preempted"  # the only way back to SUBMITTED: the next attempt after preemption
    return "run." + t.to_state.value.lower()


def _run_data(run: Run, staged: Staged, timings: dict[str, datetime]) -> dict[str, Any]:
    t = staged.transition
    return {
        "run_id": run.id,
        "job": run.job,
        "state": t.to_state.value,
        "from_state": t.from_state.value if t.from_state else None,
        "seq": t.seq,
        "attempt": staged.attempt,
        "backend_job_id": staged.backend_job_id,
        "snapshot_id": staged.snapshot_id,
        "cluster": staged.cluster,
        "trigger": run.trigger,
        "source": run.source,
        "detail": t.detail,
        "error": run.error if t.to_state in (RunState.FAILED, RunState.REJECTED) else "",
        "metrics": run.metrics if t.to_state is RunState.COMPLETED else {},
        "timings": {state: at.isoformat() for state, at in timings.items()},
        "cause": t.cause,
        "correlation_id": run.correlation,
    }


def _model_events(ctx: Context, run: Run, t: Transition) -> list[OutboundEvent]:
    model = next((m for m in ctx.store.model_versions(run.job) if m.run_id == run.id), None)
    if model is None:
        return []
    data = _model_data(model, run)
    kinds = ["model.registered", "model.promoted"] if model.promoted else ["model.registered"]
    return [
        _event(ctx, run, t, kind, data, suffix=kind, subject=f"models/{model.name}/{model.version}") for kind in kinds
    ]


def _model_data(model: ModelVersion, run: Run) -> dict[str, Any]:
    return {
        "model": model.name,
        "version": model.version,
        "run_id": model.run_id,
        "snapshot_id": model.snapshot_id,
        "manifest_hash": model.manifest_hash,
        "artifact": model.artifact,
        "metrics": model.metrics,
        "promoted": model.promoted,
        "gate": model.gate,
        "registered_at": model.registered_at.isoformat(),
        "correlation_id": run.correlation,
    }


def _event(
    ctx: Context,
    run: Run,
    t: Transition,
    kind: str,
    data: dict[str, Any],
    *,
    suffix: str = "",
    subject: str = "",
) -> OutboundEvent:
    return OutboundEvent(
        id=f"{run.id}:{t.seq}" + (f":{suffix}" if suffix else ""),
        type=PREFIX + kind,
        source=ctx.settings.events_source,
        subject=subject or f"jobs/{run.job}/runs/{run.id}",
        time=t.at,
        data=data,
        correlation=run.correlation,
        cause=t.cause,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None

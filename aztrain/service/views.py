"""The API's views of domain objects, as `aztrain.api` models (the CLI reads the same models back).

Each view is built through its model, so the OpenAPI document describes exactly the JSON it dumps to (`dump`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from aztrain.api import models as api
from aztrain.api import teams as teams_api
from aztrain.domain.cost import billed_seconds, money, price_table
from aztrain.domain.identity import DEFAULT_TEAM
from aztrain.domain.layout import short_run_id
from aztrain.domain.records import ClusterRecord, DeadLetter, JobRecord, ModelVersion
from aztrain.domain.retrain import Window
from aztrain.domain.runs import Run, RunState, Transition
from aztrain.service.run_outputs import RunFiles
from aztrain.service.usecases import costing, dryrun
from aztrain.service.usecases.registry import Lineage


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as the API's JSON: wire names (`from`), timestamps in ISO 8601."""
    return model.model_dump(mode="json", by_alias=True)


def _run(run: Run, runs_container: str) -> dict[str, Any]:
    files = RunFiles.of(run, runs_container)
    return {
        "id": run.id,
        "short_id": short_run_id(run.id),
        "job": run.job,
        "state": run.state,
        "terminal": run.is_terminal,
        "trigger": run.trigger,
        "source": run.source,
        "cause": run.cause,
        "correlation_id": run.correlation,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "cluster": run.cluster,
        "backend_job_id": run.backend_job_id,
        "snapshot_id": run.snapshot_id,
        "attempt": run.attempt,
        "manifest_hash": run.manifest_hash,
        "error": run.error,
        "problems": [{"field": p.field, "message": p.message} for p in run.problems],
        "waiting_reason": run.waiting_reason,
        "metrics": run.metrics,
        # A rejected manifest never ran: it has no files to point at.
        "outputs": None if run.state is RunState.REJECTED else files.outputs(),
        "team": run.team or DEFAULT_TEAM,
        "submitted_by": run.submitted_by,
        "priority": run.priority,
        "cost": _cost(run),
    }


def _cost(run: Run) -> dict[str, Any] | None:
    if run.rate is None:
        return None
    now = datetime.now(UTC)  # a live cost is as of the answer
    rate = run.rate
    return {
        "amount": money(costing.cost_of(run, now)),
        "final": run.is_terminal,
        "currency": rate.currency,
        "billed_seconds": billed_seconds(run.placed_at, costing.ended_at(run), now),
        "nodes": rate.nodes,
        "gpus": rate.gpus,
        "vm_size": rate.vm_size,
        "tier": rate.tier,
        "region": rate.region,
        "node_hour": rate.node_hour,
    }


def run_view(run: Run, *, runs_container: str) -> api.RunView:
    """A run, with where its logs, metrics and model are (`outputs`)."""
    return api.RunView.model_validate(_run(run, runs_container))


def run_detail(run: Run, history: list[Transition], *, runs_container: str) -> api.RunDetail:
    """A run and every transition of its history."""
    return api.RunDetail.model_validate({**_run(run, runs_container), "history": [t.to_json() for t in history]})


def job_view(job: JobRecord) -> api.JobView:
    return api.JobView(
        name=job.name,
        manifest_hash=job.manifest_hash,
        updated_at=job.updated_at,
        watch=f"{job.watch_container}/{job.watch_prefix}" if job.watch_prefix else None,
        last_run_id=job.last_run_id,
        manifest=job.spec.normalised(),
    )


def cluster_view(cluster: ClusterRecord) -> api.ClusterView:
    return api.ClusterView.model_validate(cluster, from_attributes=True)


def dead_letter_view(letter: DeadLetter) -> api.DeadLetterView:
    return api.DeadLetterView.model_validate(letter, from_attributes=True)


def window_view(job: str, window: Window) -> api.WindowView:
    """A job's retraining window: what it does now, every blocker at once, and what happens next."""
    blockers = [
        api.BlockerView(kind=b.kind, reason=b.reason, until=b.until, run=b.run or None) for b in window.blockers
    ]
    return api.WindowView(
        job=job,
        action=window.action,
        reason=window.reason,
        arrivals=window.arrivals,
        fires_at=window.fires_at,
        blockers=blockers,
        next=window.next,
    )


def model_view(model: ModelVersion) -> api.ModelView:
    return api.ModelView.model_validate(model, from_attributes=True)


def lineage_view(found: Lineage, *, runs_container: str) -> api.Lineage:
    """model → run → snapshot → blobs, each blob marked with whether the trainer reported reading it."""
    read = None if found.data_read is None else set(found.data_read)
    snapshot = found.snapshot.to_json()
    snapshot["blobs"] = [{**blob, "read": None if read is None else blob["name"] in read} for blob in snapshot["blobs"]]
    return api.Lineage(
        model=model_view(found.model),
        run=run_view(found.run, runs_container=runs_container),
        snapshot=api.SnapshotView.model_validate(snapshot),
        data_read=None if found.data_read is None else list(found.data_read),
        code=api.CodeSnapshotView.model_validate(found.code.to_json()) if found.code else None,
    )


def cost_report_view(report: costing.Report, *, region: str, budgets: dict[str, float | None]) -> teams_api.CostReport:
    """A month's spend per team, job and day, with the price table's source; money rounded as stored."""

    def spend(team: str, value: costing.Spend, **where: str) -> teams_api.Spend:
        return teams_api.Spend(
            team=team,
            cost=money(value.total),
            final=money(value.final),
            live=money(value.live),
            gpu_hours=round(value.gpu_seconds / 3600, 4),
            runs=value.runs,
            budget=budgets.get(team) if not where else None,
            **where,
        )

    table = price_table()
    return teams_api.CostReport(
        month=report.month,
        currency=report.currency,
        prices=teams_api.PriceSource(source=table.source, fetched=table.fetched, region=region),
        teams=[spend(team, value) for team, value in sorted(report.teams.items())],
        jobs=[spend(team, value, job=job) for (team, job), value in sorted(report.jobs.items())],
        days=[spend(team, value, day=day) for (team, day), value in sorted(report.days.items())],
    )


def dry_run_view(answer: dryrun.DryRun) -> teams_api.DryRunView:
    spec, rate = answer.placement, answer.rate
    placement = teams_api.Placement(
        cluster="" if spec.serverless else spec.name,
        serverless=spec.serverless,
        vm_size=rate.vm_size,
        tier=rate.tier,
        nodes=rate.nodes,
        gpus=rate.gpus,
        region=rate.region,
        node_hour=rate.node_hour,
    )
    return teams_api.DryRunView(
        job=answer.job,
        team=answer.team,
        priority=answer.priority,
        placement=placement,
        currency=rate.currency,
        cost_bound=money(answer.cost_bound),
        expected_cost=None if answer.expected_cost is None else money(answer.expected_cost),
        admits_now=not answer.refusals and answer.waiting_reason is None,
        refusals=answer.refusals,
        waiting_reason=answer.waiting_reason,
        estimated_wait_seconds=answer.estimated_wait_seconds,
    )

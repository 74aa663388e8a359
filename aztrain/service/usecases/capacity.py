"""Cluster capacity: each cluster's record of desired vs observed nodes, and scale to zero.

A cluster's desired size is the largest active run on it; when that falls to zero the backend
is told at once to release its nodes, and the reconciler keeps asking until it sees zero,
recording how long it took. Serverless runs have no cluster (their `cluster` is empty): no record,
no scale-down and no idle tail, since their nodes go with the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from aztrain.domain.records import ClusterRecord
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service import faults
from aztrain.service.usecases.context import Context


def sync_cluster(ctx: Context, run: Run, *, sized: dict[str, int] | None = None) -> None:
    """A run arrived on a cluster or ended there: update the cluster's record at the cost of one run, not of all.

    An arrival raises the desired size if the run needs more nodes. An end that leaves another
    run active changes nothing now (the reconciler's pass recounts); the last run's end brings
    the cluster down to zero at once. The steps between leave the cluster as it is.
    `sized`: records this pass has seen or made to hold so many nodes, so many arrivals read one once.
    """
    if run.is_terminal:
        if not _any_active(ctx, run.cluster):  # never scale down under an active run
            reconcile_cluster(ctx, _record(ctx, run.cluster), [])
    elif run.last is not None and run.last.to_state is RunState.PROVISIONING:  # arrived, admitted
        known = {} if sized is None else sized
        nodes = _nodes(ctx, run)
        if known.get(run.cluster, 0) >= nodes:
            return  # in a pass only the last run's end lowers a record, and this run is active
        record = _record(ctx, run.cluster)
        if nodes > record.desired_nodes:
            record = ctx.store.put_cluster(_desire(record, nodes, ctx.now()))
        known[run.cluster] = record.desired_nodes


def reconcile_clusters(ctx: Context, active: Sequence[Run] | None = None) -> None:
    """Bring every cluster of this backend up to date (the reconciler's last step).

    `active`: the active runs as the reconciler's pass left them (read from the index if not given),
    so a pass reads them once for every cluster. They may be copies behind their runs: a run they
    say keeps a cluster up that its record has let go is confirmed on its own row first, and a
    scale-down is confirmed by a fresh read of the index.
    """
    runs = ctx.store.find_runs(states=ACTIVE_STATES) if active is None else active
    for cluster in ctx.store.list_clusters():
        if cluster.backend != ctx.backend.name:
            continue
        on_it = _confirmed(ctx, cluster, [r for r in runs if r.cluster == cluster.name])
        if not on_it and (cluster.desired_nodes or cluster.observed_nodes) and _any_active(ctx, cluster.name):
            continue  # a run arrived since `active` was read: never scale down under it
        reconcile_cluster(ctx, cluster, on_it)


def reconcile_cluster(ctx: Context, cluster: ClusterRecord, active: Sequence[Run]) -> None:
    """Size the cluster for the largest of its `active` runs; zero nodes when none is left."""
    now = ctx.now()
    desired = max((_nodes(ctx, r) for r in active), default=0)
    if desired == 0 and (cluster.desired_nodes or cluster.observed_nodes):
        faults.checkpoint("capacity.before-scale-down")
        ctx.backend.scale_to_zero(cluster.name)  # idempotent: repeated until nodes are seen at zero
        faults.checkpoint("capacity.after-scale-down")
    updated = cluster if desired == cluster.desired_nodes else _desire(cluster, desired, now)
    observed = ctx.backend.cluster_nodes(cluster.name)
    updated = replace(updated, observed_nodes=observed, active_runs=len(active))
    if observed == 0 and desired == 0 and updated.zero_at is None and updated.last_scale_at:
        updated = replace(updated, zero_at=now, seconds_to_zero=(now - updated.last_scale_at).total_seconds())
    if updated != cluster:  # a steady cluster costs no write
        ctx.store.put_cluster(updated)


def _confirmed(ctx: Context, cluster: ClusterRecord, listed: list[Run]) -> list[Run]:
    """The cluster's active runs, where those that would raise its size are read from their own rows.

    Arrivals raise the record themselves (`sync_cluster`), so a listed run that needs more than
    the record says is a copy left behind by a crash, or an arrival whose update was lost:
    its own row tells which, and a copy behind is refreshed.
    """
    confirmed = []
    for run in listed:
        if _nodes(ctx, run) > cluster.desired_nodes and run.etag is None:
            current = ctx.store.get_run(run.id)
            if current is None:
                continue
            if current.seq != run.seq:
                ctx.store.refresh_active(current)
            if current.is_terminal or current.cluster != cluster.name:
                continue
            run = current
        confirmed.append(run)
    return confirmed


def _any_active(ctx: Context, cluster: str) -> bool:
    return bool(ctx.store.find_runs(states=ACTIVE_STATES, cluster=cluster, limit=1))


def _nodes(ctx: Context, run: Run) -> int:
    return ctx.backend.cluster_for(run.manifest.compute).nodes


def _record(ctx: Context, cluster: str) -> ClusterRecord:
    return ctx.store.get_cluster(ctx.backend.name, cluster) or ClusterRecord(backend=ctx.backend.name, name=cluster)


def _desire(cluster: ClusterRecord, nodes: int, now: datetime) -> ClusterRecord:
    return replace(
        cluster,
        desired_nodes=nodes,
        last_scale_action=f"scale-to-{nodes}",
        last_scale_at=now,
        zero_at=None,
        seconds_to_zero=None,
    )

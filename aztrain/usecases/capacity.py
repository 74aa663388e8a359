"""Cluster capacity: each cluster's record of desired vs observed nodes, and scale to zero.

A cluster's desired size is the largest active run on it; when that falls to zero the backend
is told at once to release its nodes, and the reconciler keeps asking until it sees zero,
recording how long it took.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from aztrain import faults
from aztrain.records import ClusterRecord
from aztrain.runs import ACTIVE_STATES, Run, RunState
from aztrain.usecases.context import Context


def sync_cluster(ctx: Context, run: Run) -> None:
    """A run arrived on a cluster or ended there: update the cluster's record at the cost of one run, not of all.

    An arrival raises the desired size if the run needs more nodes. An end that leaves another
    run active changes nothing now (the reconciler's pass recounts); the last run's end brings
    the cluster down to zero at once. The steps between leave the cluster as it is.
    """
    if run.is_terminal:
        if ctx.store.find_runs(states=ACTIVE_STATES, cluster=run.cluster, limit=1):
            return  # never scale down under an active run
        reconcile_cluster(ctx, _record(ctx, run.cluster))
    elif run.last is not None and run.last.from_state is RunState.ACCEPTED:
        record, nodes = _record(ctx, run.cluster), ctx.backend.cluster_for(run.manifest.compute).nodes
        if nodes > record.desired_nodes:
            ctx.store.put_cluster(_desire(record, nodes, ctx.now()))


def reconcile_clusters(ctx: Context) -> None:
    """Bring every cluster of this backend up to date (the reconciler's last step)."""
    for cluster in ctx.store.list_clusters():
        if cluster.backend == ctx.backend.name:
            reconcile_cluster(ctx, cluster)


def reconcile_cluster(ctx: Context, cluster: ClusterRecord) -> None:
    """Recount the cluster's active runs and size it for the largest; zero nodes when none is left."""
    now = ctx.now()
    active = ctx.store.find_runs(states=ACTIVE_STATES, cluster=cluster.name)
    desired = max((ctx.backend.cluster_for(r.manifest.compute).nodes for r in active), default=0)
    if desired == 0 and (cluster.desired_nodes or cluster.observed_nodes):
        faults.checkpoint("capacity.before-scale-down")
        ctx.backend.scale_to_zero(cluster.name)  # idempotent: repeated until nodes are seen at zero
        faults.checkpoint("capacity.after-scale-down")
    if desired != cluster.desired_nodes:
        cluster = _desire(cluster, desired, now)
    observed = ctx.backend.cluster_nodes(cluster.name)
    cluster = replace(cluster, observed_nodes=observed, active_runs=len(active))
    if observed == 0 and desired == 0 and cluster.zero_at is None and cluster.last_scale_at:
        cluster = replace(cluster, zero_at=now, seconds_to_zero=(now - cluster.last_scale_at).total_seconds())
    ctx.store.put_cluster(cluster)


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

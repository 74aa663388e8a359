"""Cluster capacity: each cluster's record of desired vs observed nodes, and scale to zero.

A cluster's desired size is the largest active run on it; when that falls to zero the backend
is told at once to release its nodes, and the reconciler keeps asking until it sees zero,
recording how long it took.
"""

from __future__ import annotations

from dataclasses import replace

from aztrain import faults
from aztrain.records import ClusterRecord
from aztrain.runs import ACTIVE_STATES, Run, RunState
from aztrain.usecases.context import Context


def sync_cluster(ctx: Context, run: Run) -> None:
    """A run changed state on a cluster: update the cluster's record, scaling to zero if it was the last.

    Only a run's arrival on the cluster (it leaves ACCEPTED) or its end changes what the cluster
    must hold; the steps between leave it as it is.
    """
    arrived = run.last is not None and run.last.from_state is RunState.ACCEPTED
    if not (arrived or run.is_terminal):
        return
    record = ctx.store.get_cluster(ctx.backend.name, run.cluster)
    reconcile_cluster(ctx, record or ClusterRecord(backend=ctx.backend.name, name=run.cluster))


def reconcile_clusters(ctx: Context) -> None:
    """Bring every cluster of this backend up to date (the reconciler's last step)."""
    for cluster in ctx.store.list_clusters():
        if cluster.backend == ctx.backend.name:
            reconcile_cluster(ctx, cluster)


def reconcile_cluster(ctx: Context, cluster: ClusterRecord) -> None:
    now = ctx.now()
    active = ctx.store.find_runs(states=ACTIVE_STATES, cluster=cluster.name)
    desired = max((ctx.backend.cluster_for(r.manifest.compute).nodes for r in active), default=0)
    if desired == 0 and (cluster.desired_nodes or cluster.observed_nodes):
        faults.checkpoint("capacity.before-scale-down")
        ctx.backend.scale_to_zero(cluster.name)  # idempotent: repeated until nodes are seen at zero
        faults.checkpoint("capacity.after-scale-down")
    if desired != cluster.desired_nodes:
        cluster = replace(
            cluster,
            desired_nodes=desired,
            last_scale_action=f"scale-to-{desired}",
            last_scale_at=now,
            zero_at=None,
            seconds_to_zero=None,
        )
    observed = ctx.backend.cluster_nodes(cluster.name)
    cluster = replace(cluster, observed_nodes=observed, active_runs=len(active))
    if observed == 0 and desired == 0 and cluster.zero_at is None and cluster.last_scale_at:
        cluster = replace(cluster, zero_at=now, seconds_to_zero=(now - cluster.last_scale_at).total_seconds())
    ctx.store.put_cluster(cluster)

"""Admission: whether a run may take nodes now, decided by an ordered list of gates.

A run leaving ACCEPTED, and a run waiting in QUEUED to be admitted (it has no backend job yet), is
put to every gate in `GATES`, in order. The first that answers a reason holds it in QUEUED with that
reason (`Run.waiting_reason`, shown by the API's run view, `aztrain show` and the dashboard); when
none does, it moves on to PROVISIONING. The reconciler asks them over the runs' copies in the
`active` index (`progress.advance_all`), so a pass costs the same whatever the history.

A gate is `(ctx, run, active_copies) -> str | None`: None admits, a string is the reason to wait.
`active_copies` are every active run as the pass has them, this one included. A reason that can
never be satisfied is no wait but a refusal at submit: `REFUSALS`, asked by `intake.submit`.

The backend's quota gate: the vCPUs a run's nodes need, against the quota they count against
(`ComputeBackend.quota`) less what is taken: the more of what the backend says is in use and what
the runs already admitted need (a run admitted but not yet given its nodes is not in the backend's
count; one that has them is in both), and then what runs ahead of it in the fair queue, waiting for
the same quota, need (`teamgates.ahead`: first come, first served between runs of equal standing).
The team gates (`teamgates`) come first: a team's own bounds hold its runs before any capacity does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aztrain.domain.errors import FieldProblem, ManifestError
from aztrain.domain.manifest import JobManifest
from aztrain.domain.records import ClusterSpec, Quota
from aztrain.domain.runs import Run, RunState
from aztrain.service.usecases import teamgates
from aztrain.service.usecases.context import Context

Gate = Callable[[Context, Run, Sequence[Run]], str | None]
Refusal = Callable[[Context, JobManifest], list[FieldProblem]]


def waiting_reason(ctx: Context, run: Run, active_copies: Sequence[Run]) -> str | None:
    """The first gate's reason for `run` to wait, or None when every gate admits it."""
    for gate in GATES:
        reason = gate(ctx, run, active_copies)
        if reason:
            return reason
    return None


def refusals(ctx: Context, manifest: JobManifest) -> list[FieldProblem]:
    """Why a manifest can never be admitted (each refusal's field and reason); empty when it can."""
    return [problem for refuse in REFUSALS for problem in refuse(ctx, manifest)]


def refuse(ctx: Context, manifest: JobManifest) -> None:
    """`ManifestError` naming every reason the manifest can never be admitted."""
    problems = refusals(ctx, manifest)
    if problems:
        raise ManifestError(problems)


def backend_quota(ctx: Context, run: Run, active_copies: Sequence[Run]) -> str | None:
    """Wait while the run's nodes do not fit in the free quota of their VM family (see the module docstring)."""
    spec = ctx.backend.cluster_for(run.manifest.compute)
    quota = _quota(ctx, spec)
    if quota is None:
        return None
    admitted = waiting_before = 0
    for other in active_copies:
        if other.id == run.id or other.spec is None or other.state is RunState.ACCEPTED:
            continue
        if other.awaiting_admission and not teamgates.ahead(ctx, other, run, active_copies):
            continue  # it waits behind this one in the fair queue
        if other.awaiting_admission and (other.waiting_reason or "").startswith(teamgates.TEAM_REASON):
            continue  # held by its own team's bounds: no capacity is kept for it
        other_spec = ctx.backend.cluster_for(other.manifest.compute)
        if (other_quota := _quota(ctx, other_spec)) is None or other_quota.name != quota.name:
            continue
        if other.awaiting_admission:
            waiting_before += needed_vcpus(other_spec)
        else:
            admitted += needed_vcpus(other_spec)
    taken = max(quota.used, admitted) + waiting_before
    need, free = needed_vcpus(spec), max(0, quota.limit - taken)
    if need <= free:
        return None
    return f"needs {need} vCPUs of {quota.name}; {free} of {quota.limit} free"


def backend_quota_refusal(ctx: Context, manifest: JobManifest) -> list[FieldProblem]:
    """Refuse a run whose nodes need more vCPUs than the whole quota they count against."""
    spec = ctx.backend.cluster_for(manifest.compute)
    quota = _quota(ctx, spec)
    need = needed_vcpus(spec)
    if quota is None or need <= quota.limit:
        return []
    what = "has no quota for it" if quota.limit == 0 else f"allows {quota.limit} in all"
    message = (
        f"needs {need} vCPUs of {quota.name} ({spec.nodes} x {spec.vm_size}); the subscription {what}: "
        f"ask for fewer nodes, another size, or more quota (Azure portal: Quotas, Machine learning)"
    )
    return [FieldProblem("compute", message)]


def needed_vcpus(spec: ClusterSpec) -> int:
    """The vCPUs a run's nodes take from quota."""
    return spec.nodes * spec.vcpus_per_node


def _quota(ctx: Context, spec: ClusterSpec) -> Quota | None:
    return ctx.backend.quota(spec) if spec.vcpus_per_node else None


GATES: list[Gate] = [*teamgates.GATES, backend_quota]
REFUSALS: list[Refusal] = [teamgates.team_refusal, backend_quota_refusal]

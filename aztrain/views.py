"""JSON views of domain objects, shared by the HTTP API and the CLI."""

from __future__ import annotations

from typing import Any

from aztrain.ports import ClusterRecord, JobRecord, ModelVersion
from aztrain.retrain import Snapshot, Window
from aztrain.runs import Run, Transition


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_view(run: Run, history: list[Transition] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": run.id,
        "job": run.job,
        "state": run.state.value,
        "terminal": run.is_terminal,
        "trigger": run.trigger,
        "source": run.source,
        "cause": run.cause,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "cluster": run.cluster,
        "backend_job_id": run.backend_job_id,
        "snapshot_id": run.snapshot_id,
        "attempt": run.attempt,
        "manifest_hash": run.manifest_hash,
        "error": run.error,
        "metrics": run.metrics,
    }
    if history is not None:
        view["history"] = [t.to_json() for t in history]
    return view


def job_view(job: JobRecord) -> dict[str, Any]:
    return {
        "name": job.name,
        "manifest_hash": job.manifest_hash,
        "updated_at": _iso(job.updated_at),
        "watch": f"{job.watch_container}/{job.watch_prefix}" if job.watch_prefix else None,
        "last_run_id": job.last_run_id,
        "manifest": job.manifest,
    }


def cluster_view(cluster: ClusterRecord) -> dict[str, Any]:
    return {
        "backend": cluster.backend,
        "name": cluster.name,
        "desired_nodes": cluster.desired_nodes,
        "observed_nodes": cluster.observed_nodes,
        "active_runs": list(cluster.active_runs),
        "last_scale_action": cluster.last_scale_action,
        "last_scale_at": _iso(cluster.last_scale_at),
        "seconds_to_zero": cluster.seconds_to_zero,
    }


def window_view(job: str, window: Window) -> dict[str, Any]:
    return {
        "job": job,
        "action": window.action,
        "reason": window.reason,
        "arrivals": window.arrivals,
        "fires_at": _iso(window.fires_at),
    }


def model_view(model: ModelVersion) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "run_id": model.run_id,
        "snapshot_id": model.snapshot_id,
        "manifest_hash": model.manifest_hash,
        "artifact": model.artifact,
        "metrics": model.metrics,
        "registered_at": _iso(model.registered_at),
        "promoted": model.promoted,
        "gate": model.gate,
    }


def lineage_view(model: ModelVersion, run: Run, snapshot: Snapshot) -> dict[str, Any]:
    """model → run → snapshot → blobs."""
    return {"model": model_view(model), "run": run_view(run), "snapshot": snapshot.to_json()}

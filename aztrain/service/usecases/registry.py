"""The model registry: a completed run's model becomes the job's next version, promoted if its gate passes.

The `models` table is the registry of record (versions, promotion, lineage); the backend's own
registry (Azure ML's) gets a copy so its users find the model where they look.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aztrain.domain.code import CodeSnapshot
from aztrain.domain.errors import BackendError, ConcurrencyError, NotFound
from aztrain.domain.layout import run_output_prefix, snapshot_blob
from aztrain.domain.records import ModelVersion
from aztrain.domain.retrain import Snapshot, judge_promotion
from aztrain.domain.runs import Run
from aztrain.service.code_snapshots import read_code_snapshot
from aztrain.service.run_outputs import RunFiles, read_data_files
from aztrain.service.usecases.context import SAVE_ATTEMPTS, Context

log = logging.getLogger(__name__)


def register_model(ctx: Context, run: Run, metrics: dict[str, Any]) -> ModelVersion:
    """Register the run's model as the job's next version (once per run) and judge its promotion."""
    for _ in range(SAVE_ATTEMPTS):
        versions = ctx.store.model_versions(run.job)
        mine = next((v for v in versions if v.run_id == run.id), None)
        if mine:  # registered already (a repeated completion): publishing again is harmless
            _publish(ctx, mine)
            return mine
        current = next((v for v in reversed(versions) if v.promoted), None)
        promoted, verdict = judge_promotion(run.manifest.registry.gate(), metrics, current)
        version = ModelVersion(
            name=run.job,
            version=(versions[-1].version if versions else 0) + 1,
            run_id=run.id,
            snapshot_id=run.snapshot_id,
            manifest_hash=run.manifest_hash,
            artifact=f"{ctx.settings.runs_container}/{run_output_prefix(run.job, run.id)}outputs/model.pt",
            metrics=metrics,
            registered_at=ctx.now(),
            promoted=promoted,
            gate=verdict,
        )
        try:
            registered = ctx.store.add_model_version(version)
        except ConcurrencyError:  # another run took that version number: count again
            continue
        _publish(ctx, registered)
        return registered
    raise ConcurrencyError(f"model {run.job}")


def _publish(ctx: Context, model: ModelVersion) -> None:
    """Mirror a version into the backend's registry; a failure is logged and does not hold the run back."""
    try:
        ctx.backend.publish_model(model)
    except BackendError as exc:  # the models table is the registry of record; the version is there
        log.warning(
            "model %s:%s not published to the %s registry: %s", model.name, model.version, ctx.backend.name, exc
        )


def read_metrics(ctx: Context, run: Run) -> dict[str, Any]:
    """The run's final `metrics.json` ({} when it wrote none or it is unreadable)."""
    try:
        raw = ctx.data.read(ctx.settings.runs_container, run_output_prefix(run.job, run.id) + "outputs/metrics.json")
        metrics = json.loads(raw)
    except (NotFound, ValueError):
        log.warning("run %s completed without a readable metrics.json", run.id)
        return {}
    return metrics if isinstance(metrics, dict) else {}


def snapshot(ctx: Context, snapshot_id: str) -> Snapshot:
    """A stored data snapshot by id."""
    try:
        raw = ctx.data.read(ctx.settings.runs_container, snapshot_blob(snapshot_id))
    except NotFound:
        raise NotFound("snapshot", snapshot_id) from None
    return Snapshot.from_json(json.loads(raw))


@dataclass(frozen=True)
class Lineage:
    """Where a model version came from: the run that trained it and the data snapshot it was given.

    `data_read` is what the run's trainer reported reading, as blob names: a snapshot blob missing
    from it was never trained on. None when the trainer reported nothing. `code` is the run's code
    snapshot (None: the built-in trainer).
    """

    model: ModelVersion
    run: Run
    snapshot: Snapshot
    data_read: tuple[str, ...] | None
    code: CodeSnapshot | None


def lineage(ctx: Context, name: str, version: int) -> Lineage:
    """model → the run that trained it → the snapshot it read (whose blobs are listed) and the files it read."""
    model = next((v for v in ctx.store.model_versions(name) if v.version == version), None)
    if model is None:
        raise NotFound("model version", f"{name}@{version}")
    run, data = ctx.get_run(model.run_id), snapshot(ctx, model.snapshot_id)
    read = read_data_files(ctx.data, RunFiles.of(run, ctx.settings.runs_container))
    # The trainer names files below its data folder, which is the snapshot's prefix.
    code = run.manifest.trainer.code
    return Lineage(
        model,
        run,
        data,
        None if read is None else tuple(data.prefix + name for name in read),
        read_code_snapshot(ctx.data, ctx.settings.runs_container, code) if code else None,
    )


def current_model(ctx: Context, name: str) -> ModelVersion | None:
    """The latest promoted version."""
    return next((v for v in reversed(ctx.store.model_versions(name)) if v.promoted), None)

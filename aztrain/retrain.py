"""Retraining on data arrival, as pure decisions: which blobs a job watches, when a window fires,
what a dataset snapshot is, and whether a model version is promoted.

The service feeds these with what the stores say; nothing here does I/O, so every
rule is unit-tested directly and the reconciler and the API give the same answer.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from aztrain.manifest import JobManifest, RetrainSpec
from aztrain.records import Arrival, BlobInfo, ModelVersion
from aztrain.runs import Run


def watches(spec: JobManifest, container: str, blob: str) -> bool:
    """Does this job's retrain watch cover `container/blob`? Globs match the path below `data.prefix`."""
    data, retrain = spec.data, spec.retrain
    if retrain is None or not retrain.on_data_arrival or container != data.container:
        return False
    return blob.startswith(data.prefix) and _chosen(spec, blob)


def _chosen(spec: JobManifest, blob: str) -> bool:
    """Selected by the job's include/exclude globs (all blobs when it has no retrain section)."""
    retrain = spec.retrain or RetrainSpec()
    return selected(blob[len(spec.data.prefix) :], retrain.include, retrain.exclude)


def selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Included (by any include glob, or all when there are none) and not excluded."""
    included = not include or any(fnmatchcase(relative, pattern) for pattern in include)
    return included and not any(fnmatchcase(relative, pattern) for pattern in exclude)


@dataclass(frozen=True)
class Window:
    """What the reconciler does with a job's pending arrivals now, and why."""

    action: str  # "idle" | "wait" | "launch" | "skip"
    reason: str
    arrivals: int = 0
    fires_at: datetime | None = None
    replace: tuple[str, ...] = ()  # runs to cancel first (concurrency: replace)


def decide_window(
    policy: RetrainSpec,
    pending: Sequence[Arrival],
    active: Sequence[Run],
    last_ended: datetime | None,
    now: datetime,
) -> Window:
    """Decide a job's retraining window from its policy (the manifest's `retrain` section)."""
    count = len(pending)
    if not pending:
        return Window("idle", "no new data")
    if active and policy.concurrency == "skip":
        return Window("skip", f"skipped: run {active[0].id} was active (concurrency: skip)", count)
    quiet_at = max(a.at for a in pending) + timedelta(seconds=policy.debounce)
    if now < quiet_at:
        return Window("wait", f"debouncing: fires {policy.debounce} s after the last arrival", count, quiet_at)
    if count < policy.min_new_blobs:
        return Window("wait", f"{count} of min_new_blobs={policy.min_new_blobs} arrived", count)
    if active and policy.concurrency == "queue":
        return Window("wait", f"queued behind active run {active[0].id} (concurrency: queue)", count)
    if last_ended is not None and not active:
        cooled_at = last_ended + timedelta(seconds=policy.cooldown)
        if now < cooled_at:
            return Window("wait", f"cooldown: {policy.cooldown} s after the last run ended", count, cooled_at)
    to_replace = tuple(r.id for r in active)  # only non-empty for concurrency: replace
    return Window("launch", f"{count} new blob(s) after a quiet period", count, now, to_replace)


@dataclass(frozen=True)
class Snapshot:
    """An immutable list of the blobs a run trains on. Same blobs, same id."""

    container: str
    prefix: str
    blobs: tuple[BlobInfo, ...]

    @property
    def id(self) -> str:
        canonical = json.dumps(
            [self.container, self.prefix, [[b.name, b.size, b.etag, b.version_id] for b in self.blobs]],
            separators=(",", ":"),
        )
        return "snap-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "container": self.container,
            "prefix": self.prefix,
            "blobs": [{"name": b.name, "size": b.size, "etag": b.etag, "version_id": b.version_id} for b in self.blobs],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Snapshot:
        return cls(value["container"], value["prefix"], tuple(BlobInfo(**b) for b in value["blobs"]))


def snapshot_of(spec: JobManifest, listed: Sequence[BlobInfo]) -> Snapshot:
    """The data a run of this manifest reads: its prefix, filtered by the retrain globs, in name order."""
    chosen = (b for b in listed if _chosen(spec, b.name))
    return Snapshot(spec.data.container, spec.data.prefix, tuple(sorted(chosen, key=lambda b: b.name)))


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


def judge_promotion(
    gate: tuple[str, str, float | None] | None, metrics: dict[str, Any], current: ModelVersion | None
) -> tuple[bool, str]:
    """Promote or not, and the sentence that says why. No gate: never promoted automatically."""
    if gate is None:
        return False, "no promote_if gate"
    metric, op, threshold = gate
    value = metrics.get(metric)
    if not isinstance(value, int | float):
        return False, f"{metric} missing from the run's metrics"
    if threshold is None:
        best = current.metrics.get(metric) if current else None
        if not isinstance(best, int | float):
            return True, f"{metric}={value:g}: first version with {metric}, promoted"
        threshold = float(best)
    passed = _COMPARE[op](float(value), threshold)
    return passed, f"{metric}={value:g} {op} {threshold:g}: {'passed' if passed else 'not met'}"

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
from typing import Any, Literal

from aztrain.domain.manifest import JobManifest, RetrainSpec
from aztrain.domain.records import Arrival, BlobInfo, ModelVersion
from aztrain.domain.runs import Run


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


#: What may hold a window back, and what the reconciler does with a window (the API's enums).
BlockerKind = Literal["debounce", "min_new_blobs", "cooldown", "active_run"]
WindowAction = Literal["idle", "wait", "launch", "skip"]


@dataclass(frozen=True)
class Blocker:
    """One thing holding a window back, and until when where that is known."""

    kind: BlockerKind
    reason: str
    until: datetime | None = None
    run: str = ""  # the active run (kind "active_run")


@dataclass(frozen=True)
class Window:
    """What the reconciler does with a job's pending arrivals now, why, and what happens next."""

    action: WindowAction
    reason: str
    arrivals: int = 0
    fires_at: datetime | None = None
    replace: tuple[str, ...] = ()  # runs to cancel first (concurrency: replace)
    blockers: tuple[Blocker, ...] = ()  # every one at once, so no blocker shows up only after another ends
    next: str = ""
    served_by: str = ""  # skip: the earlier run that already trained on this data (it consumes the arrivals)


def decide_window(
    policy: RetrainSpec,
    pending: Sequence[Arrival],
    active: Sequence[Run],
    last_completed: datetime | None,
    now: datetime,
) -> Window:
    """Decide a job's retraining window from its policy (the manifest's `retrain` section).

    Cooldown counts from the last COMPLETED run only: a failed or canceled run trained no model worth resting on.
    """
    count = len(pending)
    if not pending:
        return Window("idle", "no new data", next="nothing until new data arrives under the watched prefix")
    current = active[0].id if active else ""
    if current and policy.concurrency == "skip":
        reason = f"skipped: run {current} was active (concurrency: skip)"
        return Window("skip", reason, count, next=f"the {count} pending blob(s) are marked skipped and start no run")
    blockers = []
    quiet_at = max(a.at for a in pending) + timedelta(seconds=policy.debounce)
    if now < quiet_at:
        blockers.append(Blocker("debounce", f"debouncing: fires {policy.debounce} s after the last arrival", quiet_at))
    if count < policy.min_new_blobs:
        blockers.append(Blocker("min_new_blobs", f"{count} of min_new_blobs={policy.min_new_blobs} arrived"))
    cooled_at = last_completed + timedelta(seconds=policy.cooldown) if last_completed else None
    if cooled_at and now < cooled_at:
        blockers.append(Blocker("cooldown", f"cooldown: {policy.cooldown} s after the last completed run", cooled_at))
    if current and policy.concurrency == "queue":
        blockers.append(Blocker("active_run", f"queued behind active run {current} (concurrency: queue)", run=current))
    to_replace = tuple(r.id for r in active) if policy.concurrency == "replace" else ()
    then = f"cancels run {current} (concurrency: replace) and " if to_replace else ""
    if not blockers:
        reason = f"{count} new blob(s) after a quiet period"
        next_ = f"{then}starts a run over the {count} new blob(s) at the next reconcile"
        return Window("launch", reason, count, now, to_replace, next=next_)
    timed = all(b.until for b in blockers)
    fires_at = max(b.until for b in blockers if b.until) if timed else None
    return Window(
        "wait",
        "; ".join(b.reason for b in blockers),
        count,
        fires_at,
        blockers=tuple(blockers),
        next=f"{then}starts a run over the new blob(s) once " + " and ".join(_lifted(b, policy) for b in blockers),
    )


def _lifted(blocker: Blocker, policy: RetrainSpec) -> str:
    """The condition that lifts a blocker, as a clause."""
    match blocker.kind:
        case "debounce":
            return f"no blob has arrived for {policy.debounce} s"
        case "min_new_blobs":
            return f"{policy.min_new_blobs} new blobs have arrived"
        case "cooldown":
            return "the cooldown has passed"
        case _:
            return f"run {blocker.run} has ended"


def checked_launch(window: Window, snapshot: Snapshot, trained_by: str) -> Window:
    """A launching window checked against the data it would train on.

    No run starts on an empty snapshot, and none on a snapshot a run of the job already has
    (`trained_by`): that run serves the arrivals instead.
    """
    if window.action != "launch":
        return window
    if not snapshot.blobs:
        where = f"{snapshot.container}/{snapshot.prefix}"
        reason = f"no data: {where} holds no blobs the job selects (the new ones were removed)"
        return Window("skip", reason, window.arrivals, next="the pending blob(s) are marked skipped and start no run")
    if trained_by:
        reason = f"already trained: run {trained_by} has this data (snapshot {snapshot.id})"
        next_ = f"the pending blob(s) are marked served by run {trained_by}; no second run on one snapshot"
        return Window("skip", reason, window.arrivals, next=next_, served_by=trained_by)
    return window


def covered(snapshot: Snapshot, pending: Sequence[Arrival]) -> list[str]:
    """Keys of the pending arrivals whose blobs the snapshot holds: the run that takes it consumes them."""
    names = {b.name for b in snapshot.blobs}
    return [a.key for a in pending if a.blob in names]


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

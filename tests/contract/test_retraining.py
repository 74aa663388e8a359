"""Retraining on data arrival: windows, policies, snapshots, registry and lineage (fakes and Azurite).

The rules of docs/manifest.md ("Which runs a manifest starts") each have a scenario here: a watching job
without data waits; a run of any trigger consumes what it trains on and no window fires on trained data;
cooldown counts from the last completed run; the window shows every blocker at once; an identical
manifest returns its run only while it is active or completed.
"""

from __future__ import annotations

import json
import random

import pytest

from aztrain.domain.records import JobPhase
from aztrain.domain.runs import RunState
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.views import dump
from tests.contract.conftest import SEED_BLOB, deliver, drive


def manifest(
    *,
    concurrency: str = "queue",
    cooldown: str | None = "0s",  # None: the default
    min_new_blobs: int = 1,
    gate: str = "",
    prefix: str = "digits/",
) -> bytes:
    registry = f"registry: {{promote_if: '{gate}'}}\n" if gate else ""
    cooling = f"cooldown: {cooldown}" if cooldown else ""
    return f"""
apiVersion: aztrain/v1
kind: TrainingJob
name: digits
data: {{container: datasets, prefix: {prefix}}}
retrain:
  on_data_arrival: true
  debounce: 60s
  {cooling}
  min_new_blobs: {min_new_blobs}
  concurrency: {concurrency}
  exclude: ['*.tmp']
{registry}""".encode()


def upload(plane: ControlPlane, name: str, body: bytes = b"x", event_id: str | None = None) -> BlobEvent:
    plane.data.write("datasets", name, body)
    etag = next(b.etag for b in plane.data.list("datasets", name) if b.name == name)
    event = BlobEvent(id=event_id or f"ev-{name}-{etag}", container="datasets", name=name, etag=etag)
    assert deliver(plane, event) == []  # an arrival of the watch: only a window starts a run
    return event


def data_runs(plane: ControlPlane) -> list:
    return [r for r in plane.store.find_runs(job="digits") if r.trigger == "data"]


def first_run_done(plane: ControlPlane, **kwargs) -> None:
    plane.submit(manifest(**kwargs), trigger="http", cause="setup", source="http")
    drive(plane)


def quiet(plane: ControlPlane) -> None:
    plane.now.advance(61)  # type: ignore[attr-defined]  # the test Clock
    plane.reconcile()


def test_a_burst_of_200_uploads_starts_exactly_one_run_over_all_of_them(plane):
    first_run_done(plane)
    events = [upload(plane, f"digits/batch/{i:03d}.npz") for i in range(200)]
    shuffled = events * 2
    random.Random(7).shuffle(shuffled)
    for event in shuffled:  # every event redelivered, out of order
        plane.on_blob_created(event)
    plane.reconcile()
    assert data_runs(plane) == []  # the window is still open
    window = plane.window("digits")
    assert (window.action, window.arrivals) == ("wait", 200) and "debouncing" in window.reason
    quiet(plane)
    (run,) = data_runs(plane)
    snapshot = plane.snapshot(run.snapshot_id)
    assert sum(b.name.startswith("digits/batch/") for b in snapshot.blobs) == 200
    quiet(plane)
    assert len(data_runs(plane)) == 1


def test_uploads_during_an_active_run_queue_one_follow_up(plane):
    first_run_done(plane, concurrency="queue")
    plane.backend.script = (JobPhase.RUNNING,)  # the next runs stay running until told otherwise
    upload(plane, "digits/a.npz")
    quiet(plane)
    (active,) = data_runs(plane)
    upload(plane, "digits/b.npz")
    upload(plane, "digits/c.npz")
    quiet(plane)
    assert len(data_runs(plane)) == 1
    assert "queued behind active run" in plane.window("digits").reason
    plane.backend.jobs[plane.get_run(active.id).backend_job_id].phases = [JobPhase.COMPLETED]
    plane.reconcile()
    plane.reconcile()
    assert plane.get_run(active.id).state is RunState.COMPLETED
    runs = data_runs(plane)
    assert len(runs) == 2
    follow_up = runs[0]
    assert {b.name for b in plane.snapshot(follow_up.snapshot_id).blobs} >= {"digits/b.npz", "digits/c.npz"}


def test_uploads_during_an_active_run_are_skipped(plane):
    first_run_done(plane, concurrency="skip")
    plane.backend.script = (JobPhase.RUNNING,)
    upload(plane, "digits/a.npz")
    quiet(plane)
    (active,) = data_runs(plane)
    upload(plane, "digits/b.npz")
    quiet(plane)
    plane.backend.jobs[plane.get_run(active.id).backend_job_id].phases = [JobPhase.COMPLETED]
    drive(plane)
    quiet(plane)
    assert len(data_runs(plane)) == 1
    assert plane.window("digits").reason == "no new data"


def test_uploads_during_an_active_run_replace_it(plane):
    first_run_done(plane, concurrency="replace")
    plane.backend.script = (JobPhase.RUNNING,)
    upload(plane, "digits/a.npz")
    quiet(plane)
    (old,) = data_runs(plane)
    upload(plane, "digits/b.npz")
    quiet(plane)
    plane.reconcile()
    assert plane.get_run(old.id).state is RunState.CANCELED
    new = data_runs(plane)[0]
    assert new.id != old.id and not new.is_terminal


def test_the_window_shows_every_blocker_at_once_and_what_happens_next(plane):
    first_run_done(plane, cooldown="1h", min_new_blobs=3)
    plane.backend.script = (JobPhase.RUNNING,)
    active = plane.submit(
        manifest(cooldown="1h", min_new_blobs=3), trigger="http", cause="f", source="http", force=True
    )
    plane.reconcile()
    plane.reconcile()  # the forced run is on the backend now, and stays RUNNING
    upload(plane, "digits/a.npz")
    upload(plane, "digits/ignored.tmp")  # excluded by the glob: not an arrival
    shown = dump(plane.queries.window("digits"))
    kinds = [b["kind"] for b in shown["blockers"]]
    assert (shown["action"], shown["arrivals"], kinds) == (
        "wait",
        1,
        ["debounce", "min_new_blobs", "cooldown", "active_run"],
    )
    debounce, count, cooldown, run = shown["blockers"]
    assert debounce["until"] and cooldown["until"] and not count["until"]
    assert count["reason"] == "1 of min_new_blobs=3 arrived"
    assert run["run"] == active.run.id and "concurrency: queue" in run["reason"]
    assert shown["fires_at"] is None  # it waits for blobs and a run, not for a time
    assert shown["next"] == (
        "starts a run over the new blob(s) once no blob has arrived for 60 s and 3 new blobs have arrived "
        f"and the cooldown has passed and run {active.run.id} has ended"
    )
    plane.backend.jobs[plane.get_run(active.run.id).backend_job_id].phases = [JobPhase.COMPLETED]
    upload(plane, "digits/b.npz")
    upload(plane, "digits/c.npz")
    quiet(plane)
    window = plane.window("digits")  # only the cooldown is left, and it counts from the run that just completed
    assert [b.kind for b in window.blockers] == ["cooldown"] and window.fires_at == window.blockers[0].until
    plane.now.advance(3600)  # type: ignore[attr-defined]
    assert plane.window("digits").action == "launch"
    plane.reconcile()
    assert len(data_runs(plane)) == 1


def test_the_jobs_own_outputs_and_logs_start_nothing(plane):
    first_run_done(plane)
    (done,) = plane.store.find_runs(job="digits")
    for name in (f"digits/{done.id}/outputs/model.pt", f"digits/{done.id}/logs/driver.log"):
        plane.data.write("runs", name, b"x")
        assert deliver(plane, BlobEvent(id=f"ev-{name}", container="runs", name=name)) == []
    assert deliver(plane, BlobEvent(id="m", container="jobs", name="other/notes.txt")) == []
    quiet(plane)
    assert plane.window("digits").reason == "no new data" and data_runs(plane) == []


def test_snapshot_ids_follow_content(plane):
    from aztrain.domain.manifest import manifest_from_dict
    from aztrain.domain.retrain import snapshot_of

    spec = manifest_from_dict(
        {
            "apiVersion": "aztrain/v1",
            "kind": "TrainingJob",
            "name": "digits",
            "data": {"container": "datasets", "prefix": "digits/"},
        }
    )
    for name in ("digits/a.npz", "digits/b.npz"):
        plane.data.write("datasets", name, name.encode())

    def snap() -> str:
        return snapshot_of(spec, plane.data.list("datasets", "digits/")).id

    first = snap()
    assert snap() == first
    plane.data.write("datasets", "digits/c.npz", b"c")
    added = snap()
    plane.data.write("datasets", "digits/a.npz", b"rewritten")
    rewritten = snap()
    removed = snapshot_of(spec, plane.data.list("datasets", "digits/")[1:]).id  # a listing without a.npz
    assert len({first, added, rewritten, removed}) == 4


@pytest.mark.parametrize("gate, promoted", [("accuracy >= 0.95", [True, False]), ("accuracy > best", [True, True])])
def test_models_are_registered_with_lineage_and_promoted_by_the_gate(plane, gate, promoted):
    plane.backend.script = (JobPhase.RUNNING,)
    for i, accuracy in enumerate((0.96, 0.97 if "best" in gate else 0.90)):
        upload(plane, f"digits/{i}.npz")
        run = plane.submit(manifest(gate=gate), trigger="http", cause=f"c{i}", source="http", force=True).run
        plane.reconcile()
        plane.reconcile()
        plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", f'{{"accuracy": {accuracy}}}'.encode())
        plane.backend.jobs[plane.get_run(run.id).backend_job_id].phases = [JobPhase.COMPLETED]
        plane.reconcile()
    versions = plane.store.model_versions("digits")
    assert [v.version for v in versions] == [1, 2]
    assert [v.promoted for v in versions] == promoted
    latest = versions[-1]
    run = plane.get_run(latest.run_id)
    assert latest.snapshot_id == run.snapshot_id and latest.manifest_hash == run.manifest_hash
    assert latest.artifact == f"runs/digits/{run.id}/outputs/model.pt"
    assert {b.name for b in plane.snapshot(latest.snapshot_id).blobs} == {"digits/0.npz", "digits/1.npz", SEED_BLOB}
    assert plane.current_model("digits") == versions[1 if all(promoted) else 0]
    assert plane.lineage("digits", 1).data_read is None  # its trainer reported nothing
    assert plane.backend.published == {("digits", v.version): v for v in versions}  # the backend's registry too


def test_lineage_marks_the_snapshot_files_the_trainer_did_not_read(plane):
    upload(plane, "digits/new.npz")
    run = plane.submit(manifest(), trigger="http", cause="c", source="http", force=True).run
    plane.reconcile()
    outputs = f"digits/{run.id}/outputs/"
    plane.data.write(
        "runs", outputs + "data_files.json", json.dumps({"files": [SEED_BLOB.removeprefix("digits/")]}).encode()
    )
    plane.data.write("runs", outputs + "metrics.json", b'{"accuracy": 0.9}')
    plane.backend.jobs[plane.get_run(run.id).backend_job_id].phases = [JobPhase.COMPLETED]
    plane.reconcile()
    (version,) = plane.store.model_versions("digits")
    found = plane.lineage("digits", version.version)
    assert found.data_read == (SEED_BLOB,)
    assert {b.name for b in found.snapshot.blobs} == {SEED_BLOB, "digits/new.npz"}  # given, but not read


def test_uploads_from_before_the_watch_began_are_not_new_data(plane):
    from datetime import timedelta

    early = plane.now() - timedelta(seconds=30)
    plane.data.write("datasets", "digits/old.npz", b"old")
    first_run_done(plane)
    late_delivery = BlobEvent(id="late", container="datasets", name="digits/old.npz", etag="e", time=early)
    assert deliver(plane, late_delivery) == []
    assert plane.window("digits").reason == "no new data"
    (run,) = plane.store.find_runs(job="digits")
    assert "digits/old.npz" in {b.name for b in plane.snapshot(run.snapshot_id).blobs}


def test_an_upload_in_the_same_second_as_the_watch_began_is_new_data(plane):
    plane.submit(manifest(prefix="fresh/"), trigger="http", cause="a", source="http")
    began = plane.store.get_job("digits").watch_since
    plane.data.write("datasets", "fresh/a.npz", b"a")
    same_second = BlobEvent(
        id="up", container="datasets", name="fresh/a.npz", etag="e", time=began.replace(microsecond=0)
    )
    deliver(plane, same_second)
    assert plane.window("digits").arrivals == 1


def test_a_watching_job_without_data_registers_its_watch_and_waits(plane):
    first = plane.submit(manifest(prefix="fresh/"), trigger="http", cause="a", source="http")
    assert first.waiting and first.run is None and not first.created and first.job == "digits"
    assert "waits for data: datasets/fresh/ holds no blobs" in first.reason and "aztrain window digits" in first.reason
    assert plane.store.find_runs(job="digits") == [] and plane.store.get_job("digits").watch_prefix == "fresh/"
    plane.data.write("jobs", "manifests/digits.yaml", manifest(prefix="fresh/"))
    assert deliver(plane, BlobEvent(id="drop", container="jobs", name="manifests/digits.yaml")) == []
    assert plane.window("digits").reason == "no new data"
    upload(plane, "fresh/a.npz")
    upload(plane, "fresh/b.npz")
    plane.reconcile()
    assert data_runs(plane) == [] and plane.window("digits").blockers[0].kind == "debounce"
    quiet(plane)
    (run,) = plane.store.find_runs(job="digits")
    assert run.trigger == "data" and {b.name for b in plane.snapshot(run.snapshot_id).blobs} == {
        "fresh/a.npz",
        "fresh/b.npz",
    }
    again = plane.submit(manifest(prefix="fresh/"), trigger="http", cause="b", source="http")
    assert again.run.id == run.id and not again.created  # the window's run is the job's run of this manifest


def test_a_forced_run_consumes_what_it_trains_on_and_no_window_fires_on_trained_data(plane):
    first_run_done(plane)
    for name in ("digits/a.npz", "digits/b.npz", "digits/c.npz"):
        upload(plane, name)
    forced = plane.submit(manifest(), trigger="http", cause="f", source="http", force=True).run
    forced = plane.advance(forced.id)  # its snapshot is taken at its first step
    assert {"digits/a.npz", "digits/b.npz", "digits/c.npz"} <= {
        b.name for b in plane.snapshot(forced.snapshot_id).blobs
    }
    assert plane.window("digits").reason == "no new data"  # the forced run served every pending upload
    drive(plane)
    assert plane.get_run(forced.id).state is RunState.COMPLETED and data_runs(plane) == []
    late = BlobEvent(id="late", container="datasets", name="digits/a.npz", etag='"an-older-version"')
    assert deliver(plane, late) == []  # news of a.npz after the run took it
    plane.now.advance(61)  # type: ignore[attr-defined]
    window = plane.window("digits")
    assert (window.action, window.served_by) == ("skip", forced.id) and "already trained" in window.reason
    plane.reconcile()
    assert data_runs(plane) == [] and plane.window("digits").reason == "no new data"


@pytest.mark.parametrize("ending", ["failed", "canceled"])
def test_cooldown_counts_from_the_last_completed_run_only(plane, ending):
    first_run_done(plane, cooldown="1h")
    plane.backend.script = (JobPhase.RUNNING,)
    upload(plane, "digits/a.npz")
    plane.now.advance(3601)  # type: ignore[attr-defined]
    plane.reconcile()
    plane.reconcile()
    (unlucky,) = data_runs(plane)
    if ending == "failed":
        plane.backend.jobs[plane.get_run(unlucky.id).backend_job_id].phases = [JobPhase.FAILED]
        plane.reconcile()
    else:
        plane.cancel(unlucky.id, cause="test")
    assert plane.get_run(unlucky.id).state is (RunState.FAILED if ending == "failed" else RunState.CANCELED)
    upload(plane, "digits/b.npz")
    quiet(plane)  # no cooldown after a run that did not complete: the fix retrains at once
    assert len(data_runs(plane)) == 2


def test_without_a_cooldown_set_the_first_upload_after_a_completed_run_retrains(plane):
    first_run_done(plane, cooldown=None)
    upload(plane, "digits/a.npz")
    quiet(plane)
    assert len(data_runs(plane)) == 1


@pytest.mark.parametrize("ending", [JobPhase.FAILED, JobPhase.CANCELED, JobPhase.COMPLETED, None])
def test_an_identical_manifest_returns_its_run_only_while_active_or_completed(plane, ending):
    plane.backend.script = (JobPhase.RUNNING,)
    run = plane.submit(manifest(), trigger="http", cause="a", source="http").run
    plane.reconcile()
    if ending is JobPhase.CANCELED:
        plane.cancel(run.id, cause="test")
    elif ending is not None:
        plane.backend.jobs[plane.get_run(run.id).backend_job_id].phases = [ending]
        plane.reconcile()
    again = plane.submit(manifest(), trigger="http", cause="b", source="http")
    if ending in (JobPhase.FAILED, JobPhase.CANCELED):  # a failed run is not done: the resubmit runs it again
        assert again.created and again.run.id != run.id and not again.reason
    else:
        assert (again.created, again.run.id) == (False, run.id)
        assert "--force" in again.reason and "?force=true" in again.reason and run.id in again.reason


def test_a_resubmit_after_a_forced_run_failed_returns_the_run_still_active(plane):
    plane.backend.script = (JobPhase.RUNNING,)
    first = plane.submit(manifest(), trigger="http", cause="a", source="http").run
    forced = plane.submit(manifest(), trigger="http", cause="b", source="http", force=True).run
    drive(plane, 3)
    plane.backend.jobs[plane.get_run(forced.id).backend_job_id].phases = [JobPhase.FAILED]
    plane.reconcile()
    assert plane.get_run(forced.id).state is RunState.FAILED and plane.get_run(first.id).state is RunState.RUNNING
    again = plane.submit(manifest(), trigger="http", cause="c", source="http")
    assert (again.created, again.run.id) == (False, first.id)  # not a second run beside it on the same data

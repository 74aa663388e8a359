"""Service scenarios, run twice: on the in-memory fakes and on real Table and Blob Storage (Azurite)."""

from dataclasses import replace

import pytest

from aztrain.domain.errors import ConcurrencyError, InvalidTransition
from aztrain.domain.records import JobPhase
from aztrain.domain.runs import Run, RunState
from aztrain.service.facade import BlobEvent, ControlPlane
from tests.contract.conftest import deliver, drive

MANIFEST = b"""
apiVersion: aztrain/v1
kind: TrainingJob
name: digits
data: {container: datasets, prefix: digits/}
compute: {nodes: 2, processes_per_node: 2}
retrain: {on_data_arrival: true}
"""


def states(plane: ControlPlane, run: Run) -> list[str]:
    return [t.to_state.value for t in plane.store.history(run.id) if t.applied]


def test_submitted_job_runs_to_completion_and_cluster_scales_to_zero(plane):
    run = plane.submit(MANIFEST, trigger="http", cause="req-1", source="http").run
    assert run.state is RunState.ACCEPTED  # recorded: every step from here is the reconciler's
    plane.data.write("runs", f"digits/{run.id}/outputs/metrics.json", b'{"accuracy": 0.97}')
    drive(plane)
    run = plane.get_run(run.id)
    assert run.state is RunState.COMPLETED
    assert run.metrics == {"accuracy": 0.97}
    assert states(plane, run) == ["ACCEPTED", "PROVISIONING", "SUBMITTED", "QUEUED", "RUNNING", "COMPLETED"]
    cluster = plane.store.get_cluster("fake", "fake-gpu-small")
    assert cluster is not None
    assert (cluster.desired_nodes, cluster.observed_nodes, cluster.active_runs) == (0, 0, 0)
    assert cluster.seconds_to_zero is not None


def test_identical_manifest_returns_the_existing_run_unless_forced(plane):
    first = plane.submit(MANIFEST, trigger="http", cause="a", source="http")
    again = plane.submit(MANIFEST.replace(b"nodes: 2", b"nodes:   2"), trigger="http", cause="b", source="http")
    assert again.run.id == first.run.id and not again.created
    assert "identical manifest" in again.reason
    forced = plane.submit(MANIFEST, trigger="http", cause="c", source="http", force=True)
    assert forced.created and forced.run.id != first.run.id
    changed = plane.submit(MANIFEST.replace(b"nodes: 2", b"nodes: 1"), trigger="http", cause="d", source="http")
    assert changed.created


@pytest.mark.parametrize("same_content", [True, False])
def test_a_submit_that_loses_the_race_for_its_job_decides_again(plane, monkeypatch, same_content):
    """Two submits of one job at once: both read the job, one writes it first, the other must not fail."""
    read_job, racing = plane.store.get_job, []

    def read_then_lose_the_race(name):
        job = read_job(name)
        if not racing:  # the first read only: another submit lands between our read and our write
            racing.append(None)
            racing[0] = plane.submit(MANIFEST, trigger="http", cause="other", source="http")
        return job

    monkeypatch.setattr(plane.store, "get_job", read_then_lose_the_race)
    mine = MANIFEST if same_content else MANIFEST.replace(b"nodes: 2", b"nodes: 1")
    result = plane.submit(mine, trigger="http", cause="mine", source="http")
    (other,) = racing
    assert other.created and result.created is not same_content
    if same_content:  # one manifest, one run
        assert result.run.id == other.run.id
    else:
        assert result.run.id != other.run.id and read_job("digits").last_run_id == result.run.id


def test_identical_submits_at_once_make_one_run_even_before_its_row_is_written(plane, monkeypatch):
    """The second submit reads the job the first has just written, before the first's run row exists."""
    add_run, racing = plane.store.add_run, []

    def let_the_other_in_first(run):
        if not racing:
            racing.append(None)
            racing[0] = plane.submit(MANIFEST, trigger="http", cause="other", source="http")
        return add_run(run)

    monkeypatch.setattr(plane.store, "add_run", let_the_other_in_first)
    mine = plane.submit(MANIFEST, trigger="http", cause="mine", source="http")
    assert mine.run.id == racing[0].run.id
    assert [r.id for r in plane.store.find_runs(job="digits")] == [mine.run.id]


def test_malformed_manifest_is_recorded_as_rejected_with_the_field_named(plane):
    result = plane.submit(MANIFEST.replace(b"nodes: 2", b"nodes: 2, gpus: 1"), trigger="http", cause="x", source="http")
    assert result.run.state is RunState.REJECTED
    assert "compute.gpus: unknown field" in result.run.error
    assert plane.store.list_jobs() == []
    assert plane.store.find_runs(states=[RunState.REJECTED]) == [result.run]


def test_backend_limits_reject_the_manifest(plane):
    result = plane.submit(MANIFEST.replace(b"nodes: 2", b"nodes: 9"), trigger="http", cause="x", source="http")
    assert result.run.state is RunState.REJECTED
    assert "compute.nodes: 9 is more than the 4 node(s) fake-gpu-small allows" in result.run.error


def manifest_event(event_id: str) -> BlobEvent:
    return BlobEvent(id=event_id, container="jobs", name="manifests/digits.yaml")


def test_same_event_delivered_twice_creates_one_run(plane):
    plane.data.write("jobs", "manifests/digits.yaml", MANIFEST)
    (first,) = deliver(plane, manifest_event("ev-1"), manifest_event("ev-1"))  # before it is acted on
    assert deliver(plane, manifest_event("ev-1")) == []  # and after
    assert [r.id for r in plane.store.find_runs()] == [first.id]


def test_reupload_with_identical_content_starts_nothing_new(plane):
    plane.data.write("jobs", "manifests/digits.yaml", MANIFEST)
    assert len(deliver(plane, manifest_event("ev-1"), manifest_event("ev-2"))) == 1
    assert deliver(plane, manifest_event("ev-3")) == []


def test_malformed_manifest_blob_is_rejected_and_not_retried(plane):
    plane.data.write("jobs", "manifests/broken.yaml", b"apiVersion: [")
    # Two events, with and without the time Event Grid always sends, each delivered twice and again later.
    events = [
        BlobEvent(id="ev-9", container="jobs", name="manifests/broken.yaml"),
        BlobEvent(id="ev-10", container="jobs", name="manifests/broken.yaml", time=plane.now()),
    ]
    made = deliver(plane, *events, *events) + deliver(plane, *events)
    assert [r.state for r in made] == [RunState.REJECTED, RunState.REJECTED]
    assert {r.job for r in made} == {"broken"} and all("not valid YAML" in r.error for r in made)


def test_cancel_stops_the_backend_job_and_ends_canceled(plane):
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    plane.reconcile()
    plane.reconcile()
    assert plane.get_run(run.id).state in (RunState.SUBMITTED, RunState.QUEUED, RunState.RUNNING)
    plane.cancel(run.id, cause="user")
    plane.cancel(run.id, cause="user again")  # idempotent
    drive(plane, 2)
    run = plane.get_run(run.id)
    assert run.state is RunState.CANCELED
    assert plane.backend.jobs[run.backend_job_id].canceled
    assert plane.backend.cluster_nodes(run.cluster) == 0
    assert plane.cancel(run.id, cause="again, after the end").state is RunState.CANCELED


def test_cancel_of_a_finished_run_is_refused(plane):
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    drive(plane)
    with pytest.raises(InvalidTransition, match="is COMPLETED; cannot cancel"):
        plane.cancel(run.id, cause="too late")


def test_cancel_before_submission_needs_no_backend_job(plane):
    plane.backend.provision_polls = 10**6
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    assert plane.cancel(run.id, cause="user").state is RunState.CANCELED


def test_late_and_duplicate_status_events_never_move_a_run_backwards(plane):
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    drive(plane)
    run = plane.get_run(run.id)
    assert run.state is RunState.COMPLETED
    plane.on_job_status(run.backend_job_id, JobPhase.RUNNING, cause="late-event")
    assert plane.get_run(run.id).state is RunState.COMPLETED
    ignored = [t for t in plane.store.history(run.id) if not t.applied]
    assert [(t.to_state, t.cause) for t in ignored] == [(RunState.RUNNING, "late-event")]


def test_a_lost_write_race_is_re_read_and_re_decided(plane):
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    store = plane.store
    real_save = store.save_run
    calls = {"n": 0}

    def racing_save(candidate: Run) -> Run:
        calls["n"] += 1
        if calls["n"] == 1:  # another worker writes the same run first, changing its ETag
            current = store.get_run(candidate.id)
            assert current is not None
            real_save(current)
        return real_save(candidate)

    store.save_run = racing_save  # type: ignore[method-assign]
    plane.advance(run.id)
    assert calls["n"] == 3  # the lost write, its re-decided retry, then the next step at once (nodes are up)
    store.save_run = real_save  # type: ignore[method-assign]
    with pytest.raises(ConcurrencyError):
        real_save(replace(plane.get_run(run.id), etag='W/"stale"'))


def test_status_events_for_unknown_jobs_or_statuses_change_nothing(plane):
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    assert plane.on_job_status("aztrain-no-such-run", JobPhase.RUNNING, cause="e1") is None
    assert plane.on_job_status(f"aztrain-{run.id}", JobPhase.UNKNOWN, cause="e2").state is run.state


def test_a_preempted_run_is_resubmitted_as_the_next_attempt_and_completes(plane):
    plane.backend.script = (JobPhase.RUNNING,)
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    drive(plane, 3)
    first_job = plane.get_run(run.id).backend_job_id
    plane.backend.preempt(first_job)
    plane.reconcile()
    resumed = plane.get_run(run.id)
    assert (resumed.state, resumed.attempt) == (RunState.SUBMITTED, 2)
    assert resumed.backend_job_id == f"{first_job}-a2"
    assert plane.on_job_status(first_job, JobPhase.FAILED, cause="late news of attempt 1").state is RunState.SUBMITTED
    plane.backend.jobs[resumed.backend_job_id].phases = [JobPhase.RUNNING, JobPhase.COMPLETED]
    drive(plane, 3)
    final = plane.get_run(run.id)
    assert final.state is RunState.COMPLETED
    rows = [t for t in plane.store.history(run.id) if t.cause == "preempted"]
    assert [r.detail for r in rows] == ["attempt 1 preempted; attempt 2 resumes from checkpoints"]


def test_preemption_beyond_the_attempt_limit_fails_the_run(plane):
    plane.backend.script = (JobPhase.RUNNING,)
    run = plane.submit(MANIFEST, trigger="http", cause="a", source="http").run
    for _ in range(plane.settings.max_preemption_attempts):
        drive(plane, 2)
        plane.backend.preempt(plane.get_run(run.id).backend_job_id)
    drive(plane, 2)
    final = plane.get_run(run.id)
    assert (final.state, final.attempt) == (RunState.FAILED, plane.settings.max_preemption_attempts)


def test_a_redelivered_rejection_is_not_reported_as_created_again(plane):
    event = BlobEvent(id="ev-bad", container="jobs", name="manifests/bad.yaml")
    plane.data.write("jobs", "manifests/bad.yaml", b"apiVersion: aztrain/v1\nkind: Nope\n")
    (first,) = deliver(plane, event)
    assert first.state is RunState.REJECTED
    text = plane.data.read("jobs", "manifests/bad.yaml")
    again = plane.submit(text, trigger="manifest", cause="ev-bad", source="jobs/manifests/bad.yaml", run_id=first.id)
    assert (again.created, again.run.id, again.reason) == (False, first.id, "already processed")


def test_a_job_with_no_data_fails_before_provisioning_naming_container_and_prefix(plane):
    plane.data.write("datasets", "other/x.npz", b"x")
    unwatched = MANIFEST.replace(b"retrain: {on_data_arrival: true}\n", b"")  # a watching job waits for data instead
    submitted = plane.submit(
        unwatched.replace(b"prefix: digits/", b"prefix: empty/"), trigger="http", cause="a", source="http"
    )
    run = plane.advance(submitted.run.id)  # the reconciler's first step
    assert run.state is RunState.FAILED
    assert "datasets/empty/ holds no blobs" in run.error
    assert states(plane, run) == ["ACCEPTED", "FAILED"] and not run.cluster
    assert plane.backend.nodes == {} and plane.backend.jobs == {}


@pytest.mark.parametrize("prefix", ["../manifests/", "digits/../../jobs/", "/abs/", "a\\\\b/", "dig\\x07its/", "./x/"])
def test_a_prefix_that_climbs_out_is_rejected(plane, prefix):
    text = MANIFEST.replace(b"prefix: digits/", f'prefix: "{prefix}"'.encode())
    result = plane.submit(text, trigger="http", cause="a", source="http")
    assert result.run.state is RunState.REJECTED and "data.prefix: must not" in result.run.error


@pytest.mark.parametrize(
    "document",
    [b"[" * 5000 + b"]" * 5000, b'{"a": ' * 3000 + b"1" + b"}" * 3000, b'{"name": ' + b"[" * 40 + b"]" * 40 + b"}"],
    ids=["json-array", "json-object", "just-past-the-limit"],
)
def test_deeply_nested_documents_are_rejected_not_crashed_on(plane, document):
    result = plane.submit(document, trigger="http", cause="deep", source="http")
    assert result.run.state is RunState.REJECTED and "nests" in result.run.error


def test_block_nesting_as_deep_as_the_size_limit_allows_is_rejected_cleanly(plane):
    levels = 350  # about 60 KiB: the 64 KiB limit bounds how deep indentation can go
    document = b"".join(b" " * i + b"a:\n" for i in range(levels))
    assert len(document) < plane.settings.max_manifest_bytes
    assert plane.submit(document, trigger="http", cause="deep", source="http").run.state is RunState.REJECTED


def test_an_oversize_manifest_is_rejected_without_being_parsed(plane):
    limit = plane.settings.max_manifest_bytes
    text = b"name: would-need-parsing\n# " + b"x" * limit
    result = plane.submit(text, trigger="manifest", cause="big", source="jobs/manifests/big-one.yaml")
    assert result.run.state is RunState.REJECTED and f"the limit is {limit} bytes" in result.run.error
    assert result.run.job == "big-one"  # named after the file: the document's own name was never read


def test_an_empty_manifest_blob_is_recorded_as_rejected(plane):
    plane.data.write("jobs", "manifests/empty.yaml", b"")
    (run,) = deliver(plane, BlobEvent(id="ev-empty", container="jobs", name="manifests/empty.yaml"))
    assert run.state is RunState.REJECTED and "document is empty" in run.error and run.job == "empty"


@pytest.mark.parametrize("name", ["digits/../../etc/passwd", "digits/\x00x", "/digits/a", "digits\\a"])
def test_blob_events_naming_a_path_that_climbs_out_are_refused(name):
    with pytest.raises(ValueError, match="blob name"):
        BlobEvent.from_subject("e", f"/blobServices/default/containers/datasets/blobs/{name}")

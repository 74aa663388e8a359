"""The ControlStore contract: the in-memory fake and Table Storage (on Azurite) behave the same."""

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from aztrain.domain.errors import DOCUMENT, ConcurrencyError, FieldProblem
from aztrain.domain.manifest import JobManifest, manifest_from_dict, parse_manifest
from aztrain.domain.records import Arrival, ClusterRecord, DeadLetter, JobRecord, ModelVersion
from aztrain.domain.runs import ACTIVE_STATES, Run, RunState
from aztrain.service.ports import ControlStore

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
SPEC: JobManifest = manifest_from_dict(
    {
        "apiVersion": "aztrain/v1",
        "kind": "TrainingJob",
        "name": "digits",
        "data": {"container": "datasets", "prefix": "digits/"},
        "compute": {"nodes": 2, "max_runtime": "30m"},
        "retrain": {"on_data_arrival": True, "debounce": "1m"},
    }
)


def a_run(job: str = "digits", run_id: str | None = None) -> Run:
    return Run.create(
        id=run_id,
        job=job,
        state=RunState.ACCEPTED,
        at=T0,
        trigger="http",
        cause="c-1",
        spec=SPEC,
        manifest_hash=SPEC.content_hash,
    )


def test_run_round_trips_with_history(run_store: ControlStore):
    run = run_store.add_run(a_run())
    assert run.etag
    moved = run_store.save_run(run.moved(RunState.PROVISIONING, cause="r", at=T0, cluster="c1"))
    got = run_store.get_run(run.id)
    assert got == moved
    assert got.manifest == SPEC and got.manifest.content_hash == SPEC.content_hash and got.created_at == T0
    history = run_store.history(run.id)
    assert [(t.seq, t.from_state, t.to_state) for t in history] == [
        (1, None, RunState.ACCEPTED),
        (2, RunState.ACCEPTED, RunState.PROVISIONING),
    ]


def test_a_run_id_is_one_jobs_only(run_store: ControlStore):
    first = run_store.add_run(a_run("digits", "5000000000000-abcdef"))
    for job in ("digits", "other-job"):  # the same run again, or another job's under its id
        with pytest.raises(ConcurrencyError):
            run_store.add_run(a_run(job, first.id))
    assert run_store.get_run(first.id) == first
    assert [(t.seq, t.to_state) for t in run_store.history(first.id)] == [(1, RunState.ACCEPTED)]
    assert run_store.find_runs(job="other-job") == []


def test_a_short_id_finds_every_run_whose_id_ends_in_it_and_no_other(run_store: ControlStore):
    twins = [run_store.add_run(a_run(job, f"500000000000{n}-c0ffee")) for n, job in ((2, "digits"), (3, "other-job"))]
    single = run_store.add_run(a_run("digits", "5000000000004-beef01"))
    assert sorted(r.id for r in run_store.runs_by_short_id("c0ffee")) == sorted(r.id for r in twins)
    assert run_store.runs_by_short_id("beef01") == [single]
    assert run_store.runs_by_short_id("000000") == []


def test_adding_a_run_again_leaves_the_index_copy_of_its_later_steps_alone(run_store: ControlStore):
    run = run_store.add_run(a_run("digits", "5000000000001-abcdef"))
    run_store.save_run(run.moved(RunState.PROVISIONING, cause="r", at=T0, cluster="c1"))
    with pytest.raises(ConcurrencyError):  # a racing or retried creation of the same run
        run_store.add_run(a_run("digits", run.id))
    (copy,) = run_store.find_runs(states=ACTIVE_STATES, cluster="c1")
    assert (copy.id, copy.state) == (run.id, RunState.PROVISIONING)


def test_stale_writes_lose(run_store: ControlStore):
    run = run_store.add_run(a_run())
    run_store.save_run(run.moved(RunState.PROVISIONING, cause="first", at=T0))
    with pytest.raises(ConcurrencyError):
        run_store.save_run(run.moved(RunState.FAILED, cause="second, stale", at=T0))
    with pytest.raises(ConcurrencyError):
        run_store.add_run(replace(run, etag=None))
    assert run_store.get_run(run.id).state is RunState.PROVISIONING


def test_find_runs_filters_and_sorts_newest_first(run_store: ControlStore):
    ids = ["0000000000003-aaaaaa", "0000000000001-aaaaaa", "0000000000002-aaaaaa"]
    for i, run_id in enumerate(ids):
        run_store.add_run(a_run(job="a" if i < 2 else "b", run_id=run_id))
    failed = run_store.get_run(ids[2])
    run_store.save_run(failed.moved(RunState.FAILED, cause="x", at=T0))
    assert [r.id for r in run_store.find_runs()] == sorted(ids)
    assert [r.id for r in run_store.find_runs(job="a")] == sorted(ids[:2])
    assert [r.id for r in run_store.find_runs(states=[RunState.FAILED, RunState.COMPLETED])] == [ids[2]]
    assert run_store.find_runs(states=[]) == []
    assert len(run_store.find_runs(limit=1)) == 1
    assert run_store.get_run("nope") is None


def test_pages_of_runs_go_newest_first_from_a_run_id_across_time_and_jobs(run_store: ControlStore):
    # Made a day apart and an instant apart: the list's time partitions and one partition both.
    ids = ["8000000000000-aaaaaa", "8000000000001-aaaaaa", "8000100000000-aaaaaa", "8000200000000-aaaaaa"]
    for i, run_id in enumerate(ids):
        run_store.add_run(a_run(job="a" if i % 2 else "b", run_id=run_id))
    failed = run_store.get_run(ids[1])
    run_store.save_run(failed.moved(RunState.FAILED, cause="x", at=T0))

    def page(**query: Any) -> list[str]:
        return [r.id for r in run_store.page_of_runs(**query)]

    assert page(limit=3) == ids[:3] and page(after=ids[0], limit=2) == ids[1:3] and page(after=ids[3], limit=5) == []
    assert page(job="a", limit=5) == [ids[1], ids[3]] and page(job="a", after=ids[1], limit=5) == [ids[3]]
    assert page(states=[RunState.FAILED], limit=5) == [ids[1]]  # the list's copy moved with its run
    assert page(states=[RunState.ACCEPTED], after=ids[0], limit=5) == ids[2:]
    assert page(job="b", states=[RunState.ACCEPTED], limit=5) == [ids[0], ids[2]]
    assert page(states=[], limit=5) == []


def test_a_rejected_run_keeps_its_problems_field_by_field(run_store: ControlStore):
    problems = (FieldProblem("compute.nodes", "must be at least 1"), FieldProblem(DOCUMENT, "document is empty"))
    rejected = Run.create(
        job="digits", state=RunState.REJECTED, at=T0, trigger="http", cause="c", error="invalid", problems=problems
    )
    run_store.add_run(rejected)
    assert run_store.get_run(rejected.id).problems == problems


def test_runs_are_found_by_an_id_prefix(run_store: ControlStore):
    ids = ["8000000000000-aaaaaa", "8000000000001-bbbbbb", "8000100000000-aaaaaa"]
    for run_id in ids:
        run_store.add_run(a_run(run_id=run_id))
    assert [r.id for r in run_store.runs_by_prefix("800000000000", 5)] == ids[:2]
    assert [r.id for r in run_store.runs_by_prefix("8000000000001-b", 5)] == [ids[1]]
    assert [r.id for r in run_store.runs_by_prefix("800000", 1)] == ids[:1]
    assert run_store.runs_by_prefix("800020", 5) == []


def test_jobs_are_conditional_too(run_store: ControlStore):
    job = JobRecord(
        name="digits",
        spec=SPEC,
        manifest_hash="h1",
        updated_at=T0,
        watch_container="datasets",
        watch_prefix="digits/",
        last_run_id="r1",
    )
    stored = run_store.put_job(job)
    assert run_store.get_job("digits") == stored
    with pytest.raises(ConcurrencyError):
        run_store.put_job(job)  # create again
    updated = run_store.put_job(replace(stored, manifest_hash="h2"))
    with pytest.raises(ConcurrencyError):
        run_store.put_job(replace(stored, manifest_hash="h3"))  # stale ETag
    assert [j.manifest_hash for j in run_store.list_jobs()] == [updated.manifest_hash] == ["h2"]
    assert run_store.get_job("other") is None
    assert run_store.get_job("digits").spec == SPEC


def test_first_claim_wins(run_store: ControlStore):
    assert run_store.claim("blobcreated", "ev-1", "run-a") == "run-a"
    assert run_store.claim("blobcreated", "ev-1", "run-b") == "run-a"
    assert run_store.claim("blobcreated", "ev-2:job/with?odd#chars", "run-c") == "run-c"
    assert run_store.claim("blobcreated", "ev-2:job/with?odd#chars", "run-d") == "run-c"


def test_clusters_upsert(run_store: ControlStore):
    record = ClusterRecord(
        backend="local", name="local-gpu", desired_nodes=2, observed_nodes=1, active_runs=1, last_scale_at=T0
    )
    run_store.put_cluster(record)
    run_store.put_cluster(replace(record, observed_nodes=2))
    got = run_store.get_cluster("local", "local-gpu")
    assert got is not None and (got.observed_nodes, got.active_runs, got.last_scale_at) == (2, 1, T0)
    assert [c.name for c in run_store.list_clusters()] == ["local-gpu"]
    assert run_store.get_cluster("local", "missing") is None


def test_arrivals_are_recorded_once_and_consumed(run_store: ControlStore):

    later = T0.replace(second=5)
    run_store.record_arrivals([Arrival(job="digits", key="b-etag2", blob="digits/b.npz", at=later)])
    run_store.record_arrivals(
        [
            Arrival(job="digits", key="a-etag1", blob="digits/a.npz", at=T0),
            Arrival(job="digits", key="a-etag1", blob="digits/a.npz", at=later),  # delivered twice in one batch
            Arrival(job="other", key="c", blob="other/c.npz", at=T0),
        ]
    )
    pending = run_store.pending_arrivals("digits")
    assert [(a.key, a.at) for a in pending] == [("a-etag1", T0), ("b-etag2", later)]
    run_store.consume_arrivals("digits", ["a-etag1"], by="run-1")
    assert [a.key for a in run_store.pending_arrivals("digits")] == ["b-etag2"]
    again = [Arrival(job="digits", key=k, blob="digits/x.npz", at=later) for k in ("a-etag1", "d-etag4")]
    run_store.record_arrivals(again)  # a batch with one known already: the other is still recorded
    assert [a.key for a in run_store.pending_arrivals("digits")] == ["b-etag2", "d-etag4"]  # consumed stays consumed


def test_many_arrivals_are_consumed_across_transaction_batches(run_store: ControlStore):

    keys = [f"k{i:03d}" for i in range(230)]
    run_store.record_arrivals([Arrival(job="burst", key=key, blob=f"d/{key}", at=T0) for key in keys])
    assert len(run_store.pending_arrivals("burst")) == 230
    run_store.consume_arrivals("burst", keys, by="run-9")
    assert run_store.pending_arrivals("burst") == []


def test_model_versions_are_unique_and_ordered(run_store: ControlStore):

    def version(n: int) -> ModelVersion:
        return ModelVersion(
            name="digits",
            version=n,
            run_id=f"r{n}",
            snapshot_id="s",
            manifest_hash="h",
            artifact="runs/digits/r/outputs/model.pt",
            metrics={"accuracy": 0.9 + n / 100},
            registered_at=T0,
            promoted=n == 2,
            gate="accuracy >= 0.9: passed",
        )

    run_store.add_model_version(version(2))
    run_store.add_model_version(version(1))
    with pytest.raises(ConcurrencyError):
        run_store.add_model_version(version(1))
    assert run_store.model_versions("digits") == [version(1), version(2)]
    assert run_store.model_versions() == [version(1), version(2)]
    assert run_store.model_versions("nope") == []


def test_dead_letters_are_recorded_once_per_function_and_event_in_time_order(run_store: ControlStore):
    later = DeadLetter("on_blob_created", "e-2", "Other", "/x", "not a BlobCreated event", T0.replace(minute=5))
    odd_id = DeadLetter("on_run_status_changed", "../a/b?#\n", "T", "", "no runId", T0)
    run_store.add_dead_letter(later)
    run_store.add_dead_letter(odd_id)
    run_store.add_dead_letter(replace(later, reason="redelivered"))  # the same event again changes nothing
    assert run_store.dead_letters() == [odd_id, later]


def test_active_runs_are_read_from_the_runs_not_yet_finished(run_store: ControlStore):
    placed, waiting, ended = (run_store.add_run(a_run(job=j)) for j in ("a", "b", "c"))
    placed = run_store.save_run(placed.moved(RunState.PROVISIONING, cause="r", at=T0, cluster="c1"))
    run_store.save_run(ended.moved(RunState.FAILED, cause="r", at=T0))

    def listed(**kwargs: Any) -> list[tuple[str, str, RunState, str]]:
        return [(r.id, r.job, r.state, r.cluster) for r in run_store.find_runs(**kwargs)]

    assert listed(states=ACTIVE_STATES) == sorted(
        [(placed.id, "a", RunState.PROVISIONING, "c1"), (waiting.id, "b", RunState.ACCEPTED, "")]
    )
    assert listed(states=ACTIVE_STATES, cluster="c1") == [(placed.id, "a", RunState.PROVISIONING, "c1")]
    assert [r.id for r in run_store.find_runs(states=ACTIVE_STATES, limit=1)] == [min(placed.id, waiting.id)]
    assert run_store.find_runs(states=ACTIVE_STATES, cluster="c2", limit=1) == []
    assert listed(states=[RunState.ACCEPTED]) == [(waiting.id, "b", RunState.ACCEPTED, "")]
    assert listed(states=[RunState.FAILED]) == [(ended.id, "c", RunState.FAILED, "")]
    assert run_store.find_runs(states=ACTIVE_STATES, cluster="c1")[0].manifest == SPEC


def test_jobs_watching_a_container_are_found_without_reading_every_job(run_store: ControlStore):
    def job(name: str, container: str = "", prefix: str = "", etag: str | None = None) -> JobRecord:
        return JobRecord(
            name=name,
            spec=SPEC,
            manifest_hash=SPEC.content_hash,
            updated_at=T0,
            watch_container=container,
            watch_prefix=prefix,
            etag=etag,
        )

    watcher = run_store.put_job(job("a", "datasets", "digits/"))
    run_store.put_job(job("b"))
    run_store.put_job(job("c", "other", "x/"))
    assert [j.name for j in run_store.watching("datasets")] == ["a"]
    assert [j.name for j in run_store.watching()] == ["a", "c"]  # every container: the reconciler's windows
    run_store.put_job(job("a", etag=watcher.etag))  # stops watching
    assert run_store.watching("datasets") == []
    assert [j.name for j in run_store.watching("other")] == [j.name for j in run_store.watching()] == ["c"]


def test_a_finished_run_is_listed_unpublished_until_its_outbox_is_cleared(run_store: ControlStore):
    ended = run_store.save_run(run_store.add_run(a_run()).moved(RunState.FAILED, cause="r", at=T0))
    quiet = run_store.add_run(a_run("other"))
    run_store.refresh_active(run_store.save_outbox(replace(quiet, outbox=())))
    assert [r.id for r in run_store.unpublished_runs()] == [ended.id]
    assert [r.id for r in run_store.find_runs(states=ACTIVE_STATES)] == [quiet.id]  # the finished one is not active
    run_store.refresh_active(run_store.save_outbox(replace(ended, outbox=())))
    assert run_store.unpublished_runs() == []


def test_a_manifest_past_one_string_property_is_stored_and_read_back_whole(run_store: ControlStore):
    include = [f"part-{i:05d}/*.npz" for i in range(3000)]  # about 60,000 characters of JSON: two parts
    text = "apiVersion: aztrain/v1\nkind: TrainingJob\nname: long\ndata: {container: datasets, prefix: long/}\n"
    spec = parse_manifest(text + f"retrain: {{on_data_arrival: true, include: {json.dumps(include)}}}\n")
    run = run_store.add_run(replace(a_run("long", "5000000000001-abcdef"), spec=spec))
    assert run_store.get_run(run.id).spec == spec  # type: ignore[union-attr]
    (copy,) = run_store.find_runs(states=ACTIVE_STATES)
    assert copy.spec == spec

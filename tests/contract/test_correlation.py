"""One correlation id, from a blob upload or an HTTP request, through everything the run leaves behind."""

import json
from dataclasses import asdict, replace
from pathlib import Path

import azure.functions as func
import pytest

from aztrain.adapters.compute.local.job import Supervisor
from aztrain.adapters.memory import RecordingEventSink
from aztrain.domain.identity import DEFAULT_TEAM, Principal
from aztrain.service.facade import BlobEvent, ControlPlane
from aztrain.service.telemetry import trace_id_of
from aztrain.service.views import run_view
from functions import submission
from tests.contract.conftest import deliver, drive
from tests.contract.test_outbox import MANIFEST

UPLOAD = "blob-created-7f3a"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_blob_uploads_event_id_follows_the_run_through_history_tags_log_header_and_events(
    plane: ControlPlane, tmp_path: Path
) -> None:
    sink = RecordingEventSink()
    plane.ctx = replace(plane.ctx, events=sink)
    plane.data.write("jobs", "manifests/digits.yaml", MANIFEST)
    (run,) = deliver(plane, BlobEvent(id=UPLOAD, container="jobs", name="manifests/digits.yaml"))
    drive(plane)
    run = plane.get_run(run.id)

    assert run.correlation == UPLOAD
    assert run_view(run, runs_container="runs").correlation_id == UPLOAD
    assert plane.store.history(run.id)[0].cause == UPLOAD
    (job,) = plane.backend.jobs.values()  # type: ignore[attr-defined]
    assert job.submission.tags["aztrain.correlation"] == UPLOAD
    assert {e.correlation for e in sink.events if e.subject.startswith("jobs/")} == {UPLOAD}

    # The local backend's supervisor heads the trainer's log with it (a canceled job writes only the header).
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "submission.json").write_text(json.dumps(asdict(job.submission)))
    (folder / "cancel").touch()
    Supervisor(folder, plane.data).run()
    log = plane.data.read("runs", job.submission.output_prefix + "logs/driver.log").decode()
    assert f"correlation id {UPLOAD}" in log.splitlines()[0]


@pytest.mark.parametrize(
    ("headers", "correlation"),
    [
        ({"traceparent": TRACEPARENT, "x-request-id": "req-9"}, "4bf92f3577b34da6a3ce929d0e0e4736"),
        ({"x-request-id": "req-9"}, "req-9"),
    ],
)
def test_an_http_submit_takes_the_callers_trace_id_else_its_request_id(plane: ControlPlane, headers, correlation):
    request = func.HttpRequest("POST", "http://localhost/api/jobs", headers=headers, body=MANIFEST)
    reply = submission.submit(
        request, plane, force=False, by=Principal("alice", frozenset({"Runs.Submit", f"Team.{DEFAULT_TEAM}"}))
    )
    run = json.loads(reply.get_body())["run"]
    assert run["correlation_id"] == correlation and run["cause"] == "http:req-9"
    assert plane.get_run(run["id"]).correlation == correlation


def test_a_malformed_traceparent_is_no_trace_id() -> None:
    assert trace_id_of(TRACEPARENT) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01") == ""
    assert trace_id_of("not a traceparent") == trace_id_of(None) == ""

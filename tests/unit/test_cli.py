"""The CLI against a scripted HTTP API: exit codes per outcome, human and --json answers, both error shapes."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
import yaml

from aztrain.api import models as wire
from aztrain.cli import follow as cli_follow
from aztrain.cli.follow import RunFollower
from aztrain.cli.main import app, main
from aztrain.cli.output import ExitCode

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "digits.yaml")
RUN_ID = "8204142846813-2a1d62"
SHORT_ID = "2a1d62"
OUTPUTS = {
    "container": "runs",
    "prefix": f"digits/{RUN_ID}/",
    "logs": f"runs/digits/{RUN_ID}/logs/driver.log",
    "model": f"runs/digits/{RUN_ID}/outputs/model.pt",
    "metrics": f"runs/digits/{RUN_ID}/outputs/metrics.json",
    "epochs": f"runs/digits/{RUN_ID}/outputs/metrics.jsonl",
}
EPOCHS = [
    {"epoch": 1, "loss": 0.9, "accuracy": 0.7, "samples_per_second": 5120.0},
    {"epoch": 2, "loss": 0.1, "accuracy": 0.95, "samples_per_second": 10211.0},
]


def row(seq: int, before: str | None, to: str, cause: str) -> dict[str, Any]:
    at = f"2026-11-28T09:12:{30 + seq:02d}.250000+00:00"
    return {"seq": seq, "from": before, "to": to, "applied": True, "cause": cause, "at": at, "detail": ""}


def run_view(state: str, *, history: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A run as the API answers it (checked against its model, so the fake never drifts from the contract)."""
    terminal = state in ("COMPLETED", "FAILED", "CANCELED", "REJECTED")
    run_id = fields.get("id", RUN_ID)
    view = {
        "id": run_id,
        "short_id": run_id[-6:],
        "job": "digits",
        "state": state,
        "terminal": terminal,
        "trigger": "http",
        "source": "http",
        "cause": "http:1",
        "correlation_id": "",
        "team": "default",
        "submitted_by": "",
        "priority": 0,
        "cost": None,
        "problems": [],
        "created_at": "2026-11-28T09:12:31+00:00",
        "updated_at": "2026-11-28T09:12:52+00:00",
        "cluster": "local-gpu-small",
        "backend_job_id": "",
        "snapshot_id": "",
        "attempt": 1,
        "manifest_hash": "ab" * 32,
        "error": "",
        "metrics": {},
        "outputs": OUTPUTS,
        "history": history if history is not None else [row(1, None, "ACCEPTED", "http:1")],
        **fields,
    }
    return wire.RunDetail.model_validate(view).model_dump(mode="json", by_alias=True)


def listed(run: dict[str, Any]) -> dict[str, Any]:
    """A run as a list shows it: without its history."""
    return {k: v for k, v in run.items() if k != "history"}


def submitted(run: dict[str, Any], *, created: bool = True, reason: str = "") -> dict[str, Any]:
    return {"run": run, "created": created, "reason": reason, "job": run["job"], "waiting": False}


def metrics(epochs: list[dict[str, Any]], final: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"run_id": RUN_ID, "state": "RUNNING", "epochs": epochs, "final": final}


class FakeApi:
    """Answers scripted replies per (method, path); a route's replies are served in turn, the last one repeated."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[tuple[int, Any, dict[str, str]]]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = []
        self.url = ""

    def on(self, method: str, path: str, *replies: Any, status: int = 200, headers: dict[str, str] | None = None):
        self.routes[(method, f"/api/{path}")] = [(status, r, headers or {}) for r in replies]

    def reply(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        replies = self.routes.get((method, path))
        if not replies:  # what the dev host answers for a route it does not have
            return 404, {"error": f"no HTTP function at {path.removeprefix('/api')}"}, {}
        return replies.pop(0) if len(replies) > 1 else replies[0]


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            fake.requests.append((self.command, parts.path, parse_qs(parts.query), dict(self.headers.items())))
            status, body, headers = fake.reply(self.command, parts.path)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            kind = "text/plain" if isinstance(body, str) else "application/json"
            self.send_header("content-type", "application/problem+json" if status >= 400 else kind)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user config or environment leaks in; followed runs are polled without pauses."""
    monkeypatch.setenv("AZTRAIN_CONFIG", str(tmp_path / "absent.toml"))
    for name in (
        "AZTRAIN_URL",
        "AZTRAIN_FUNCTION_KEY",
        "AZTRAIN_STORAGE_CONNECTION_STRING",
        "AZTRAIN_STORAGE_ACCOUNT_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli_follow, "POLL_SECONDS", 0.0)


def cli(capsys: pytest.CaptureFixture[str], *args: str, url: str = "") -> tuple[int, str, str]:
    code = main([*(["--url", url] if url else []), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def script_run_to(api: FakeApi, final: str, **fields: Any) -> None:
    """A submit whose run trains two epochs and ends `final`."""
    accepted = run_view("ACCEPTED")
    running = run_view("RUNNING", history=[row(1, None, "ACCEPTED", "http:1"), row(2, "ACCEPTED", "RUNNING", "b")])
    ending = [*running["history"]]
    if final == "CANCELED":
        ending += [row(3, "RUNNING", "CANCEL_REQUESTED", "http:cancel"), row(4, "CANCEL_REQUESTED", "CANCELED", "b")]
    else:
        ending.append(row(3, "RUNNING", final, "backend"))
    api.on("POST", "jobs", submitted(accepted), status=202)
    api.on("GET", f"runs/{RUN_ID}", running, running, run_view(final, history=ending, **fields))
    api.on("GET", f"runs/{RUN_ID}/metrics", metrics(EPOCHS[:1]), metrics(EPOCHS))
    api.on("GET", "jobs", {"jobs": [{**job_view(), "manifest": manifest_document(epochs=2)}], "next": None})


MANIFEST_TEXT = """\
apiVersion: aztrain/v1
kind: TrainingJob
name: digits
data: {container: datasets, prefix: digits/}
trainer: {entrypoint: trainer.train, args: {epochs: 2}}
compute: {profile: gpu-small, nodes: 1, processes_per_node: 1}
"""


def manifest_document(*, epochs: int) -> dict[str, Any]:
    """The job's manifest as the API lists it, asking for `epochs`."""
    document = yaml.safe_load(MANIFEST_TEXT)
    document["trainer"]["args"]["epochs"] = epochs
    return dict(document)


@pytest.fixture
def manifest(tmp_path: Path) -> str:
    path = tmp_path / "digits.yaml"
    path.write_text(MANIFEST_TEXT)
    return str(path)


@pytest.mark.parametrize(
    ("final", "code", "outcome"),
    [
        ("COMPLETED", ExitCode.OK, "COMPLETED after 21 s: accuracy=0.9500 loss=0.1000"),
        ("FAILED", ExitCode.FAILED, "FAILED after 21 s: trainer exited with code 2"),
        ("CANCELED", ExitCode.CANCELED, "CANCELED after 21 s: cancel requested by http:cancel"),
    ],
)
def test_submit_wait_tells_states_epochs_and_outcome_and_exits_by_outcome(api, capsys, manifest, final, code, outcome):
    fields = {"metrics": {"accuracy": 0.95, "loss": 0.1}} if final == "COMPLETED" else {}
    if final == "FAILED":
        fields["error"] = "trainer exited with code 2\nerror: no digits.npz"
    script_run_to(api, final, **fields)
    status, out, _ = cli(capsys, "submit", manifest, "--wait", url=api.url)
    assert status == code
    lines = out.splitlines()
    assert lines[0] == f"run {SHORT_ID} of job digits: ACCEPTED — created"
    assert "ACCEPTED → RUNNING" in out
    assert [line.split()[1] for line in lines if line.strip().startswith("epoch ")] == ["1/2", "2/2"]
    assert "epoch 2/2  loss 0.1000  accuracy 0.9500  10,211 samples/s" in out
    assert outcome in lines
    assert f"  log      {OUTPUTS['logs']}" in lines
    assert (f"  model    {OUTPUTS['model']}" in lines) == (final == "COMPLETED")
    assert api.requests[0][3].get("Idempotency-Key")  # a retried POST is one submit


def test_submit_wait_json_is_one_document_with_the_final_run_and_its_epochs(api, capsys, manifest):
    script_run_to(api, "COMPLETED")
    status, out, _ = cli(capsys, "submit", manifest, "--wait", "--json", url=api.url)
    assert status == ExitCode.OK
    document = json.loads(out)
    assert set(document) == {"run", "created", "reason", "job", "waiting", "metrics"}
    assert document["run"]["state"] == "COMPLETED"
    assert [{k: v for k, v in row.items() if v is not None} for row in document["metrics"]["epochs"]] == EPOCHS


@pytest.mark.parametrize(
    "body",
    [
        {  # problem+json
            "type": "https://aztrain.dev/problems/invalid-manifest",
            "title": "Invalid manifest",
            "status": 422,
            "detail": "invalid manifest (http): trainer.args.epochs: expected int, got str 'five'",
            "errors": [{"field": "trainer.args.epochs", "message": "expected int, got str 'five'"}],
            "run": run_view("REJECTED"),
        },
        {
            "error": "invalid manifest (http): trainer.args.epochs: expected int, got str 'five'",
            "run": run_view("REJECTED"),
        },
    ],
    ids=["problem+json", "old-shape"],
)
def test_a_rejected_manifest_exits_4_naming_the_problem(api, capsys, manifest, body):
    api.on("POST", "jobs", body, status=body.get("status", 400))
    status, out, err = cli(capsys, "submit", manifest, "--wait", url=api.url)
    assert (status, out) == (ExitCode.REJECTED, "")
    assert "trainer.args.epochs: expected int, got str 'five'" in err
    assert "HTTP 4" not in err
    status, out, _ = cli(capsys, "submit", manifest, "--json", url=api.url)
    assert status == ExitCode.REJECTED
    assert json.loads(out)["error"]["code"] == 4 and json.loads(out)["error"]["run"]["state"] == "REJECTED"


def test_wait_past_its_timeout_exits_5_and_says_the_run_goes_on(api, capsys, manifest):
    api.on("POST", "jobs", submitted(run_view("RUNNING")), status=202)
    api.on("GET", f"runs/{RUN_ID}", run_view("RUNNING"))
    api.on("GET", "jobs", {"jobs": [], "next": None})
    status, _, err = cli(capsys, "submit", manifest, "--wait", "--timeout", "1s", url=api.url)
    assert status == ExitCode.TIMED_OUT
    assert f"run {SHORT_ID} still RUNNING after 1 s" in err and f"aztrain cancel {SHORT_ID}" in err


def test_ctrl_c_while_waiting_exits_130_and_says_how_to_cancel(api, capsys, monkeypatch, manifest):
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFollower, "follow", interrupted)
    script_run_to(api, "COMPLETED")
    status, _, err = cli(capsys, "submit", manifest, "--wait", url=api.url)
    assert status == ExitCode.INTERRUPTED
    assert f"run {SHORT_ID} goes on" in err and f"cancel it: aztrain cancel {SHORT_ID}" in err


def test_api_errors_exit_6_in_the_apis_words_in_both_shapes(api, capsys):
    api.on("GET", "runs/nosuchrun", {"error": "run 'nosuchrun' not found"}, status=404)
    api.on("GET", "runs", {"runs": []})
    status, _, err = cli(capsys, "show", "nosuchrun", url=api.url)
    assert (status, err.strip()) == (ExitCode.API_ERROR, "error: run 'nosuchrun' not found")
    problem = {"type": "about:blank", "title": "Conflict", "status": 409, "detail": f"run {RUN_ID} is COMPLETED"}
    api.on("GET", f"runs/{RUN_ID}", run_view("COMPLETED"))
    api.on("POST", f"runs/{RUN_ID}/cancel", problem, status=409)
    status, out, _ = cli(capsys, "cancel", RUN_ID, "--json", url=api.url)
    assert status == ExitCode.API_ERROR
    assert json.loads(out) == {
        "error": {"code": 6, "message": f"run {RUN_ID} is COMPLETED", "problems": [], "status": 409}
    }


def test_an_unreachable_api_exits_7(capsys):
    status, _, err = cli(capsys, "runs", url="http://127.0.0.1:9")
    assert status == ExitCode.UNREACHABLE and "cannot reach the aztrain API at http://127.0.0.1:9" in err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["submit", EXAMPLE, "--forse"], "Did you mean --force?"),
        (["submit", EXAMPLE, "--wait", "--timeout", "soon"], "'soon' is not a duration"),
        (["show", "82041"], "give the run's short id"),
        (["runs", "--state", "RUNING"], "unknown state(s) RUNING"),
        (["lineage", "digits"], "NAME@VERSION"),
        (["submit", "no-such-file.yaml"], "does not exist"),
    ],
)
def test_usage_errors_exit_2_with_the_subcommands_usage(capsys, args, says):
    status, _, err = cli(capsys, *args)
    assert status == ExitCode.USAGE
    assert f"Usage: aztrain {args[0]}" in err and says in " ".join(err.split())


def test_a_short_id_or_last_names_a_run_and_an_ambiguous_one_is_a_usage_error(api, capsys):
    api.on("GET", f"runs/{SHORT_ID}", run_view("COMPLETED"))  # the API resolves short ids
    api.on("GET", f"runs/{RUN_ID}", run_view("COMPLETED"))
    api.on("GET", f"runs/{RUN_ID}/metrics", metrics([]))
    api.on("GET", "runs", {"runs": [listed(run_view("COMPLETED"))], "next": None})
    status, out, _ = cli(capsys, "show", SHORT_ID, url=api.url)
    assert status == ExitCode.OK and out.startswith(f"run {SHORT_ID} ({RUN_ID})")
    assert "  (http)  " in out and "http from http" not in out  # where it came from, said once
    assert cli(capsys, "show", "last", url=api.url)[0] == ExitCode.OK
    assert api.requests[-3][2]["limit"] == ["1"]  # `last`: one page of one run, newest first
    candidates = [RUN_ID, "8204142846999-ffffff"]
    api.on("GET", "runs/8204142", {"status": 409, "detail": "ambiguous", "candidates": candidates}, status=409)
    status, _, err = cli(capsys, "show", "8204142", url=api.url)
    assert status == ExitCode.USAGE and "matches 2 runs" in err and candidates[1] in err


def test_every_listing_has_a_table_and_a_stable_json_shape(api, capsys):
    long_metrics = {"accuracy": 0.9917, "loss": 0.0098, "data_snapshot": "snap-" + "f" * 40, "epochs": 5}
    runs = [listed(run_view("COMPLETED", metrics=long_metrics))]
    api.on("GET", "runs", {"runs": runs, "next": "token-2"})
    api.on("GET", "jobs", {"jobs": [{**job_view(), "manifest": {}}], "next": None})
    cluster = {
        "backend": "local",
        "name": "local-gpu-small",
        "desired_nodes": 0,
        "observed_nodes": 0,
        "active_runs": 0,
        "last_scale_action": "scale-to-0",
        "last_scale_at": None,
        "seconds_to_zero": 0.6,
    }
    api.on("GET", "clusters", {"clusters": [cluster]})
    expectations = {
        "runs": (
            {"runs": runs, "next": "token-2"},
            [SHORT_ID, "accuracy=0.9917 loss=0.0098 epochs=5 data_snapshot=snap-ff", "…"],
        ),
        "jobs": (
            {"jobs": [{**job_view(), "manifest": {}}]},
            ["digits", "datasets/digits/", "abababababab", SHORT_ID],
        ),
        "clusters": ({"clusters": [cluster]}, ["local-gpu-small", "scale-to-0", "0.6 s"]),
    }
    for command, (document, shown) in expectations.items():
        status, out, _ = cli(capsys, command, url=api.url)
        assert status == ExitCode.OK and all(text in out for text in shown), out
        status, out, _ = cli(capsys, command, "--json", url=api.url)
        assert (status, json.loads(out)) == (ExitCode.OK, document)
    assert "aztrain runs --limit 20 --continuation token-2" in cli(capsys, "runs", url=api.url)[2]
    cli(capsys, "runs", "--continuation", "token-2", url=api.url)
    assert api.requests[-1][2]["continuation"] == ["token-2"]


def job_view() -> dict[str, Any]:
    return {
        "name": "digits",
        "manifest_hash": "ab" * 32,
        "updated_at": "2026-11-28T09:12:31+00:00",
        "watch": "datasets/digits/",
        "last_run_id": RUN_ID,
    }


def test_show_cancel_window_models_and_lineage_answer_in_both_forms(api, capsys):
    history = [row(1, None, "ACCEPTED", "http:1"), row(2, "ACCEPTED", "COMPLETED", "b")]
    done = run_view("COMPLETED", history=history, correlation_id="corr-1")
    api.on("GET", f"runs/{RUN_ID}", done)
    api.on("GET", f"runs/{RUN_ID[:8]}", done)  # the API resolves a prefix
    api.on("GET", f"runs/{RUN_ID}/metrics", metrics(EPOCHS, {"accuracy": 0.95}))
    api.on("GET", "jobs", {"jobs": [], "next": None})
    cancel_requested = listed(run_view("CANCEL_REQUESTED"))
    api.on("POST", f"runs/{RUN_ID}/cancel", cancel_requested, status=202)
    window = {
        "job": "digits",
        "action": "wait",
        "reason": "debounce",
        "arrivals": 3,
        "fires_at": "2026-11-28T10:00:00+00:00",
        "blockers": [],
        "next": "starts a run",
    }
    api.on("GET", "jobs/digits/window", window)
    model = {
        "name": "digits",
        "version": 1,
        "run_id": RUN_ID,
        "snapshot_id": "snap-1",
        "manifest_hash": "ab" * 32,
        "artifact": OUTPUTS["model"],
        "metrics": {"accuracy": 0.95},
        "registered_at": "2026-11-28T09:13:00+00:00",
        "promoted": True,
        "gate": "accuracy >= 0.9",
    }
    api.on("GET", "models", {"models": [model], "next": None})
    api.on("GET", "models/digits", {"name": "digits", "current": 1, "versions": [model]})
    snapshot = {"id": "snap-1", "container": "datasets", "prefix": "digits/", "blobs": []}
    lineage = {"model": model, "run": listed(done), "snapshot": snapshot, "data_read": None, "code": None}
    api.on("GET", "models/digits/versions/1", lineage)
    epochs = [{"accuracy": None, "loss": None, "samples_per_second": None, **row} for row in EPOCHS]
    cases = {
        ("show", RUN_ID[:8]): ({"run": done, "metrics": metrics(epochs, {"accuracy": 0.95})}, "epoch 2 "),
        ("cancel", RUN_ID): ({"run": cancel_requested}, f"run {SHORT_ID}: CANCEL_REQUESTED"),
        ("window", "digits"): (window, "digits: 3 new blob(s) pending — debounce, fires at 2026-11-28 10:00:00"),
        ("models",): ({"models": [model]}, "accuracy >= 0.9"),
        ("models", "digits"): ({"name": "digits", "current": 1, "versions": [model]}, "yes"),
        ("lineage", "digits@1"): (lineage, "data   snap-1  0 blob(s) in datasets/digits/"),
    }
    for args, (document, shown) in cases.items():
        status, out, _ = cli(capsys, *args, url=api.url)
        assert status == ExitCode.OK and shown in out, (args, out)
        status, out, _ = cli(capsys, *args, "--json", url=api.url)
        assert (status, json.loads(out)) == (ExitCode.OK, document)
    assert "correlation id corr-1" in cli(capsys, "show", RUN_ID, url=api.url)[1]


def test_logs_reads_the_whole_log_in_chunks_and_follows_a_running_one(api, capsys):
    api.on("GET", f"runs/{RUN_ID}", run_view("RUNNING"), run_view("RUNNING"), run_view("COMPLETED"))
    api.on(
        "GET",
        f"runs/{RUN_ID}/logs",
        "epoch 1/2\n",
        "epoch 2/2\n",
        "",
        headers={"X-Log-Next-Offset": "10"},
    )
    status, out, _ = cli(capsys, "logs", RUN_ID, "-f", url=api.url)
    assert (status, out) == (ExitCode.OK, "epoch 1/2\nepoch 2/2\n")
    offsets = [r[2].get("offset") for r in api.requests if r[1].endswith("/logs")]
    assert offsets == [None, ["10"], ["10"]]  # the follower continues where the last read ended


def test_logs_of_an_api_without_the_endpoint_says_so(api, capsys):
    api.on("GET", f"runs/{RUN_ID}", run_view("COMPLETED"))
    status, _, err = cli(capsys, "logs", RUN_ID, url=api.url)
    assert status == ExitCode.API_ERROR
    assert f"does not serve /api/runs/{RUN_ID}/logs" in err


def test_plan_never_prints_a_temp_folder_of_this_machine(capsys, manifest):
    status, out, _ = cli(capsys, "plan", manifest)
    assert status == ExitCode.OK and "code: <trainer-code>" in out
    assert tempfile.gettempdir() not in out
    status, out, _ = cli(capsys, "plan", manifest, "--json")
    assert json.loads(out)["job"]["code"] == "<trainer-code>"


def test_validate_and_schema_answer_in_both_forms(capsys, tmp_path, manifest):
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST_TEXT.replace("nodes: 1", "nodes: 0"))
    status, _, err = cli(capsys, "validate", str(bad))
    assert status == ExitCode.FAILED and "compute.nodes: input should be greater than or equal to 1" in err
    status, out, _ = cli(capsys, "validate", str(bad), "--json")
    assert status == ExitCode.FAILED and json.loads(out)["valid"] is False
    status, out, _ = cli(capsys, "validate", manifest, "--json")
    assert json.loads(out)["job"] == "digits" and json.loads(out)["valid"] is True
    status, out, _ = cli(capsys, "schema", "--json")
    assert json.loads(out)["title"]


def test_help_documents_every_exit_code_and_version_prints(capsys):
    status, out, _ = cli(capsys, "--help")
    docs = (ROOT / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert f"{code.value:>3}  " in out, code
        assert f"| {code.value} |" in docs, code
    status, out, _ = cli(capsys, "--version")
    assert status == ExitCode.OK and out.startswith("aztrain ")


def test_connection_settings_come_from_flag_then_env_then_config_file(capsys, monkeypatch, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('url = "http://from-config:1"\nfunction_key = "config-key"\n')
    monkeypatch.setenv("AZTRAIN_CONFIG", str(config))

    def settings(*args: str) -> dict[str, Any]:
        status, out, _ = cli(capsys, *args, "config", "--json")
        assert status == ExitCode.OK
        return json.loads(out)["settings"]

    assert settings()["url"] == {"value": "http://from-config:1", "source": f"config {config}"}
    assert settings()["function_key"]["value"] == "conf…"  # secrets are never printed whole
    monkeypatch.setenv("AZTRAIN_URL", "http://from-env:1")
    assert settings()["url"] == {"value": "http://from-env:1", "source": "env AZTRAIN_URL"}
    assert settings("--url", "http://from-flag:1")["url"] == {"value": "http://from-flag:1", "source": "flag"}
    config.write_text('ulr = "typo"\n')
    status, _, err = cli(capsys, "config")
    assert status == ExitCode.USAGE and "unknown key(s) ulr" in err


def test_every_option_and_argument_has_help_and_every_command_examples():
    group = typer.main.get_command(app)
    commands = group.commands
    missing = [f"{name} {p.name}" for name, cmd in commands.items() for p in cmd.params if not getattr(p, "help", "")]
    assert missing == [] and all(p.help for p in group.params)
    assert [name for name, cmd in commands.items() if "Examples" not in (cmd.epilog or "")] == []


def test_an_account_url_signs_in_with_azure_identity_and_wins_over_a_connection_string(capsys, monkeypatch):
    from azure.identity import DefaultAzureCredential

    from aztrain.cli.upload import connect

    service = connect(account_url="https://acct.blob.core.windows.net", connection_string="UseDevelopmentStorage=true")
    assert service.account_name == "acct" and isinstance(service.credential, DefaultAzureCredential)
    monkeypatch.setenv("AZTRAIN_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    status, out, _ = cli(capsys, "config", "--json")
    assert status == ExitCode.OK
    url = json.loads(out)["settings"]["storage_account_url"]
    assert url == {"value": "https://acct.blob.core.windows.net", "source": "env AZTRAIN_STORAGE_ACCOUNT_URL"}


def test_ctrl_c_during_an_upload_exits_130_and_says_how_to_resume(capsys, monkeypatch, tmp_path):
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("aztrain.cli.upload.upload_folder", interrupted)
    status, _, err = cli(capsys, "upload", str(tmp_path), "--container", "datasets", "--prefix", "x/")
    assert status == ExitCode.INTERRUPTED and "run the same command again to resume" in err


def test_window_lists_every_blocker_with_what_happens_next(api, capsys):
    debouncing = "debouncing: fires 60 s after the last arrival"
    window = {
        "job": "digits",
        "action": "wait",
        "reason": "debouncing: fires 60 s after the last arrival; queued behind active run",
        "arrivals": 1,
        "fires_at": None,
        "blockers": [
            {"kind": "debounce", "reason": debouncing, "until": "2026-11-28T10:00:00+00:00", "run": None},
            {
                "kind": "active_run",
                "reason": f"queued behind active run {RUN_ID} (concurrency: queue)",
                "until": None,
                "run": RUN_ID,
            },
        ],
        "next": f"starts a run over the new blob(s) once run {RUN_ID} has ended",
    }
    api.on("GET", "jobs/digits/window", window)
    status, out, _ = cli(capsys, "window", "digits", url=api.url)
    assert status == ExitCode.OK
    assert "digits: 1 new blob(s) pending — wait\n" in out
    assert f"  - {debouncing} (until 2026-11-28 10:00:00)\n" in out  # the kind is said once, not twice
    assert f"  - queued behind active run {RUN_ID} (concurrency: queue)\n" in out
    assert f"  next: starts a run over the new blob(s) once run {RUN_ID} has ended\n" in out


def test_show_all_asks_for_the_refused_transitions_too(api, capsys):
    refused = {**row(3, "CANCELED", "RUNNING", "backend:Running"), "applied": False}
    history = [row(1, None, "ACCEPTED", "http:1"), row(2, "ACCEPTED", "CANCELED", "http:cancel"), refused]
    api.on("GET", f"runs/{RUN_ID}", run_view("CANCELED", history=history))
    status, out, _ = cli(capsys, "show", RUN_ID, "--all", url=api.url)
    assert status == ExitCode.OK and "CANCELED → RUNNING" in out and "(ignored)" in out
    cli(capsys, "show", RUN_ID, url=api.url)
    asked = [query.get("all") for _, path, query, _ in api.requests if path == f"/api/runs/{RUN_ID}"]
    assert asked == [["true"], None]


def test_a_watching_job_without_data_is_reported_as_waiting_not_as_a_run(api, capsys):
    reason = "job digits is registered and waits for data: datasets/digits/ holds no blobs it selects yet"
    api.on(
        "POST", "jobs", {"run": None, "created": False, "reason": reason, "job": "digits", "waiting": True}, status=202
    )
    status, out, _ = cli(capsys, "submit", EXAMPLE, "--wait", url=api.url)
    assert (status, reason in out) == (ExitCode.OK, True)


def test_download_writes_the_model_or_every_output_into_the_folder(api, capsys, tmp_path):
    api.on("GET", f"runs/{SHORT_ID}", run_view("COMPLETED"))
    files = [
        {"name": name, "size": len(body), "path": f"runs/digits/{RUN_ID}/outputs/{name}"}
        for name, body in (("model.pt", "weights"), ("metrics.json", "{}"))
    ]
    api.on("GET", f"runs/{RUN_ID}/outputs", {"run_id": RUN_ID, "files": files})
    api.on("GET", f"runs/{RUN_ID}/outputs/model.pt", "weights")
    api.on("GET", f"runs/{RUN_ID}/outputs/metrics.json", "{}")
    status, out, _ = cli(capsys, "download", SHORT_ID, "-o", str(tmp_path / "model"), url=api.url)
    assert status == ExitCode.OK and (tmp_path / "model" / "model.pt").read_text() == "weights"
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["model.pt"] and "model.pt" in out
    status, out, _ = cli(capsys, "download", SHORT_ID, "--outputs", "-o", str(tmp_path / "all"), "--json", url=api.url)
    assert status == ExitCode.OK and sorted(f["name"] for f in json.loads(out)["files"]) == ["metrics.json", "model.pt"]
    assert (tmp_path / "all" / "metrics.json").read_text() == "{}"
    api.on("GET", f"runs/{RUN_ID}/outputs", {"run_id": RUN_ID, "files": []})
    status, _, err = cli(capsys, "download", SHORT_ID, url=api.url)
    assert status == ExitCode.FAILED and "has no model.pt" in err


def test_config_fits_100_columns_even_with_a_long_connection_string(capsys, monkeypatch):
    monkeypatch.setenv("AZTRAIN_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=" + "x" * 240)
    status, out, _ = cli(capsys, "config")
    assert status == ExitCode.OK and max(len(line) for line in out.splitlines()) <= 100, out
    assert out.count("x") == 240  # the value wraps inside its column: nothing of it is cut

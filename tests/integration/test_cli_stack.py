"""The CLI against the real local stack (`aztrain dev`: Azurite, the dev host, real horovodrun)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from aztrain.cli.main import main
from aztrain.cli.output import ExitCode
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.azurite, pytest.mark.horovod]

TRAINING_TIMEOUT = 240.0
#: The end-to-end tests' local stack (`aztrain dev` in its own process), as this module's fixture.
stack = e2e.stack


def manifest(tmp_path: Path, name: str, *, epochs: int, watch: bool = True) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"apiVersion: aztrain/v1\nkind: TrainingJob\nname: {name}\n"
        f"data: {{container: datasets, prefix: {name}/}}\ntrainer: {{args: {{epochs: {epochs}}}}}\n"
        "compute: {profile: e2e, nodes: 1, processes_per_node: 2, max_runtime: 10m}\n"
        + ("retrain: {on_data_arrival: true, debounce: 1h}\n" if watch else "")
    )
    return str(path)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from trainer.data import export_digits

    return export_digits(tmp_path_factory.mktemp("digits")).read_bytes()


def cli(stack: Stack, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--url", stack.url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_process(stack: Stack, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "aztrain.cli.main", "--url", stack.url, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines_of(process: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines as they come."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def next_epoch_line(lines: queue.Queue[str]) -> str:
    while True:
        line = lines.get(timeout=TRAINING_TIMEOUT)
        if "epoch " in line:
            return line


def test_submit_wait_trains_and_every_command_reads_the_run(stack: Stack, digits: bytes, tmp_path, capsys):
    stack.data.write("datasets", "cli-job/digits.npz", digits)
    status, out, _ = cli(stack, capsys, "submit", manifest(tmp_path, "cli-job", epochs=2), "--wait")
    assert status == ExitCode.OK, out
    assert "epoch 1/2  loss" in out and "epoch 2/2  loss" in out and "RUNNING → COMPLETED" in out
    short = out.split()[1]  # what the CLI shows and takes: the short id
    run_id = stack.client.run(short).id
    assert len(short) == 6 and run_id.endswith(f"-{short}")
    assert f"  model    runs/cli-job/{run_id}/outputs/model.pt" in out.splitlines()
    prefix = run_id[:10]

    status, out, _ = cli(stack, capsys, "show", short)
    assert status == ExitCode.OK and f"run {short} ({run_id})  job cli-job  COMPLETED" in out and "epoch 2/2" in out
    assert cli(stack, capsys, "show", "last")[1] == out  # the newest run
    status, out, _ = cli(stack, capsys, "show", prefix, "--json")
    shown = json.loads(out)
    assert shown["run"]["id"] == run_id and len(shown["metrics"]["epochs"]) == 2
    status, out, _ = cli(stack, capsys, "logs", prefix)
    assert status == ExitCode.OK and "epoch 2/2" in out
    status, out, _ = cli(stack, capsys, "logs", prefix, "--tail", "1", "--json")
    assert json.loads(out)["run"] == run_id and json.loads(out)["text"].count("\n") == 1

    listings: dict[tuple[str, ...], Any] = {
        ("runs", "--job", "cli-job"): lambda d: [r["id"] for r in d["runs"]] == [run_id],
        ("jobs",): lambda d: any(j["name"] == "cli-job" and j["last_run_id"] == run_id for j in d["jobs"]),
        ("clusters",): lambda d: all({"name", "observed_nodes"} <= c.keys() for c in d["clusters"]),
        ("models", "cli-job"): lambda d: d["versions"][0]["run_id"] == run_id,
        ("lineage", "cli-job@1"): lambda d: d["run"]["id"] == run_id and d["snapshot"]["blobs"],
        ("window", "cli-job"): lambda d: d["job"] == "cli-job" and d["arrivals"] == 0,
    }
    for args, holds in listings.items():
        status, out, _ = cli(stack, capsys, *args)
        assert status == ExitCode.OK and out.strip(), args
        status, out, _ = cli(stack, capsys, *args, "--json")
        assert status == ExitCode.OK and holds(json.loads(out)), (args, out)

    status, _, err = cli(stack, capsys, "cancel", prefix)
    assert status == ExitCode.API_ERROR and f"run {run_id} is COMPLETED" in err


def test_logs_follow_prints_lines_as_written_and_a_canceled_run_exits_3(stack: Stack, digits: bytes, tmp_path):
    stack.data.write("datasets", "cli-long/digits.npz", digits)
    path = Path(manifest(tmp_path, "cli-long", epochs=2000))
    submitted = stack.client.submit(path.read_bytes()).run
    assert submitted is not None
    run_id = submitted.id
    follower = cli_process(stack, "logs", "-f", run_id)
    waiter = cli_process(stack, "show", run_id, "--wait")
    try:
        lines = lines_of(follower)
        first = next_epoch_line(lines)
        later = next_epoch_line(lines)  # written after the first was read: the log is followed, not dumped
        assert int(later.split("epoch ")[1].split("/")[0]) > int(first.split("epoch ")[1].split("/")[0])
        assert (
            subprocess.run(
                [sys.executable, "-m", "aztrain.cli.main", "--url", stack.url, "cancel", run_id[:12]], check=False
            ).returncode
            == ExitCode.OK
        )
        assert follower.wait(timeout=TRAINING_TIMEOUT) == ExitCode.CANCELED
        out, _ = waiter.communicate(timeout=TRAINING_TIMEOUT)
        assert waiter.returncode == ExitCode.CANCELED
        assert "CANCEL_REQUESTED → CANCELED" in out and "cancel requested by http:cancel" in out
    finally:
        for process in (follower, waiter):
            process.kill()
            process.wait()


def test_rejected_and_failed_runs_exit_with_their_own_codes(stack: Stack, tmp_path, capsys):
    bad = Path(manifest(tmp_path, "cli-bad", epochs=2))
    bad.write_text(bad.read_text().replace("epochs: 2", "epochs: two"))
    status, out, err = cli(stack, capsys, "submit", str(bad))
    assert (status, out) == (ExitCode.REJECTED, "")
    assert "trainer.args.epochs: expected int, got str 'two'" in err
    # Unwatched: a job that watches its prefix would wait for data instead of running.
    status, out, _ = cli(stack, capsys, "submit", manifest(tmp_path, "cli-nodata", epochs=2, watch=False), "--wait")
    assert status == ExitCode.FAILED
    assert "FAILED after" in out and "no data: datasets/cli-nodata/ holds no blobs" in out
    assert "outputs/model.pt" not in out  # it never ran: no paths to files that do not exist
    assert "cli-nodata" in cli(stack, capsys, "runs", "--state", "FAILED")[1]

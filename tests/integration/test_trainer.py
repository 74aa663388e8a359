"""The trainer program: real training under each distribution's launcher, its outputs, and bad input refused.

Two processes run under `horovodrun --gloo` (Horovod) and under `torchrun` (PyTorch DDP over Gloo),
launched exactly as the local backend launches them. Helpers here (`launcher`, `trainer`, `run`,
`DISTRIBUTIONS`, ...) are shared by the other test_trainer_* modules.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from aztrain.adapters.compute.local.launchers import LAUNCHERS
from trainer.cache import DataCache
from trainer.data import export_digits, load, split
from trainer.model import build_model, state_digest

TRAIN_TIMEOUT = 180.0
INVALID_TIMEOUT = 60.0
#: Rank 0's epoch line; horovodrun puts "[0]<stdout>:" before it, torchrun passes it through as it is.
EPOCH_LINE = re.compile(
    r"^(?:\[0\]<stdout>:)?epoch (\d+)/(\d+) loss=\d+\.\d{4} accuracy=[01]\.\d{4} samples/s=\d+ seconds=\d+\.\d{2}$",
    re.MULTILINE,
)
#: Every test of several processes runs under both; Horovod's need it built (scripts/build_horovod.sh).
DISTRIBUTIONS = [pytest.param("horovod", marks=pytest.mark.horovod), "pytorch"]


def write_digits(root: Path) -> Path:
    """Digits as a job sees them: downloaded with their blob prefix, so one folder down; returns the data folder."""
    export_digits(root / "digits")
    return root


def launcher(distribution: str, processes: int) -> list[str]:
    """The command that starts `processes` trainers under `distribution`, as the local backend runs it."""
    return LAUNCHERS[distribution].argv(Path(sys.executable), processes)


def trainer(data_dir: Path, output_dir: Path, args_json: str, *flags: str, distribution: str = "horovod") -> list[str]:
    """The trainer as one plain process (a group of one); prefix `launcher(distribution, n)` for n processes."""
    return [
        sys.executable, "-m", "trainer.train", "--distribution", distribution,
        "--data-dir", str(data_dir), "--output-dir", str(output_dir), "--args-json", args_json, *flags,
    ]  # fmt: skip


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def history(output_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl, one entry per completed epoch."""
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_two_processes_train_to_high_accuracy_in_step_and_rank_0_writes_the_outputs(
    data_dir: Path, tmp_path: Path, project_root: Path, distribution: str
):
    out = tmp_path / "outputs"
    lineage = ["--snapshot-id", "snap-0123", "--manifest-hash", "f00d"]
    flags = ["--cache-dir", str(tmp_path / "cache"), *lineage]
    command = [*launcher(distribution, 2), *trainer(data_dir, out, '{"epochs": 5}', *flags, distribution=distribution)]
    result = run(command, project_root, TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr

    # One line per epoch: only rank 0 reports (each rank printing would double them).
    assert EPOCH_LINE.findall(result.stdout) == [(str(epoch), "5") for epoch in range(1, 6)]
    assert result.stdout.count("training: 2 process(es) on cpu, batch 64 x 1 pass(es) x 2, lr 0.05 -> 0.1") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    assert (metrics["epochs"], metrics["world_size"]) == (5, 2)
    assert metrics["loss"] > 0 and metrics["samples_per_second"] > 0
    assert (metrics["data_snapshot"], metrics["manifest_hash"], metrics["data_from_cache"]) == (
        "snap-0123",
        "f00d",
        False,
    )
    assert metrics["ranks_in_sync"] is True  # every rank's parameters hashed identically at the end
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "data_files.json",
        "metrics.json",
        "metrics.jsonl",
        "model.pt",
    ]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "checkpoint-e0004-s000000.pt",
        "checkpoint-e0005-s000000.pt",
    ]

    epochs = history(out)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert all(e.keys() == {"epoch", "loss", "accuracy", "lr", "samples_per_second", "epoch_seconds"} for e in epochs)
    assert epochs[-1]["accuracy"] == metrics["accuracy"]

    model_file = torch.load(out / "model.pt")
    assert model_file["classes"] == list("0123456789") and model_file["input_shape"] == [1, 8, 8]
    assert (model_file["data_format"], model_file["data_snapshot"], model_file["manifest_hash"]) == (
        "digits",
        "snap-0123",
        "f00d",
    )
    assert model_file["args"]["epochs"] == 5
    # The saved weights are rank 0's, and rank 1's hashed the same.
    assert state_digest(model_file["state_dict"]) == metrics["parameter_digest"]
    # The saved model is the one that was scored: its accuracy on the whole test set is the reported one.
    model = build_model((1, 8, 8), 10)
    model.load_state_dict(model_file["state_dict"])
    model.eval()
    test = split(
        load(data_dir, cache=DataCache(tmp_path / "cache"), snapshot_id="snap-0123", image_size=32).dataset
    ).test
    with torch.no_grad():
        accuracy = (model(test.images.float() / 255).argmax(dim=1) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1.5 / len(test))


def test_a_second_run_on_the_same_snapshot_reads_the_node_cache_and_a_new_snapshot_decodes_again(
    data_dir: Path, tmp_path: Path, project_root: Path
):
    def train(snapshot: str, name: str) -> tuple[str, dict[str, Any]]:
        out = tmp_path / name
        flags = ["--cache-dir", str(tmp_path / "cache"), "--snapshot-id", snapshot]
        result = run(trainer(data_dir, out, '{"epochs": 1}', *flags), project_root, TRAIN_TIMEOUT)
        assert result.returncode == 0, result.stdout + result.stderr
        line = next(line for line in result.stdout.splitlines() if line.startswith("data: "))
        return line, json.loads((out / "metrics.json").read_text())

    runs = [train("snap-a", "first"), train("snap-a", "second"), train("snap-b", "third")]
    assert [metrics["data_from_cache"] for _, metrics in runs] == [False, True, False]
    assert "decoded from" in runs[0][0] and "read from cache" in runs[1][0] and "decoded from" in runs[2][0]


def test_the_trainer_reads_every_data_file_and_reports_each_ones_samples(tmp_path: Path, project_root: Path):
    """An upload beside the first file is trained on: the log, metrics.json and data_files.json say so."""
    data, out = write_digits(tmp_path / "data"), tmp_path / "outputs"
    export_digits(data / "digits" / "batch-2")
    result = run(
        trainer(data, out, '{"epochs": 1}', "--cache-dir", str(tmp_path / "cache")), project_root, TRAIN_TIMEOUT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data: 3594 images" in result.stdout
    assert "read 2 source(s): digits/digits.npz (1797), digits/batch-2/digits.npz (1797)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    sources = {"digits/digits.npz": 1797, "digits/batch-2/digits.npz": 1797}
    assert (metrics["samples"], metrics["data_sources"]) == (3594, sources)
    read = json.loads((out / "data_files.json").read_text())
    assert read == {"files": ["digits/digits.npz", "digits/batch-2/digits.npz"], "samples": sources}


@pytest.mark.parametrize(
    "args_json, problem",
    [
        ('{"epochs": 2, "foo": 1}', "trainer.args.foo: unknown argument"),
        ('{"epochs": "five"}', "trainer.args.epochs: expected int, got str 'five'"),
        ('{"epochs": ', "--args-json is not valid JSON"),
    ],
)
def test_invalid_arguments_exit_2_naming_the_argument_before_training(
    data_dir: Path, tmp_path: Path, project_root: Path, args_json: str, problem: str
):
    out = tmp_path / "outputs"
    result = run(trainer(data_dir, out, args_json), project_root, INVALID_TIMEOUT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and problem in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "epoch" not in result.stdout and not out.exists()


@pytest.mark.parametrize("layout", ["no folder", "empty folder"])
def test_missing_data_exits_2_naming_the_folder(tmp_path: Path, project_root: Path, layout: str):
    data = tmp_path / "data"
    if layout == "empty folder":
        data.mkdir()
    result = run(
        trainer(data, tmp_path / "out", "{}", "--cache-dir", str(tmp_path / "cache")), project_root, INVALID_TIMEOUT
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and str(data) in result.stderr
    assert "epoch" not in result.stdout


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_under_a_launcher_an_invalid_argument_stops_every_process_before_training(
    data_dir: Path, tmp_path: Path, project_root: Path, distribution: str
):
    command = [
        *launcher(distribution, 2),
        *trainer(data_dir, tmp_path / "out", '{"lr": "fast"}', distribution=distribution),
    ]
    result = run(command, project_root, TRAIN_TIMEOUT)
    # The launcher exits 1 whenever a process fails; it names each process's own exit code.
    assert result.returncode != 0
    output, started = result.stdout + result.stderr, LAUNCHERS[distribution]
    errors = [line for line in output.splitlines() if started.error_line().search(line)]
    assert len(errors) == 1 and errors[0].endswith("error: trainer.args.lr: expected float, got str 'fast'")  # rank 0's
    assert re.search(started.exit_code.format(code=2), output)
    assert "epoch" not in output


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_under_a_launcher_bad_data_found_by_one_rank_stops_every_rank_together(
    tmp_path: Path, project_root: Path, distribution: str
):
    """Local rank 0 reads the data and finds none; the others learn it in the next collective, not by hanging."""
    missing = tmp_path / "no-data"
    command = [*launcher(distribution, 2), *trainer(missing, tmp_path / "out", "{}", distribution=distribution)]
    result = run(command, project_root, TRAIN_TIMEOUT)
    assert result.returncode != 0
    output, started = result.stdout + result.stderr, LAUNCHERS[distribution]
    errors = [line for line in output.splitlines() if started.error_line().search(line)]
    assert len(errors) == 1 and str(missing) in errors[0]  # reported once, by rank 0, naming the folder
    assert re.search(started.exit_code.format(code=2), output) and "epoch" not in output

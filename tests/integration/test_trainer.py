"""The Horovod trainer: argument and data validation, and real `horovodrun --gloo -np 2` training runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.args import ArgsError, TrainArgs, parse_args
from trainer.data import DataError, eval_shard, export_digits, load_dataset, train_shard
from trainer.model import build_model

HOROVODRUN = Path(sys.executable).parent / "horovodrun"
TRAIN_TIMEOUT = 180.0
INVALID_TIMEOUT = 60.0
EPOCH_LINE = re.compile(r"^\[0\]<stdout>:epoch (\d+)/(\d+) loss=\d+\.\d{4} accuracy=[01]\.\d{4}$", re.MULTILINE)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits as the job sees them: downloaded with their blob prefix, so one folder down."""
    root = tmp_path_factory.mktemp("data")
    export_digits(root / "digits")
    return root


def horovodrun(processes: int) -> list[str]:
    return [str(HOROVODRUN), "--gloo", "-np", str(processes), "-H", f"localhost:{processes}"]


def trainer(data_dir: Path, output_dir: Path, args_json: str) -> list[str]:
    """The trainer as one plain process (Horovod size 1); prefix `horovodrun(n)` for n processes."""
    return [
        sys.executable, "-m", "trainer.train",
        "--data-dir", str(data_dir), "--output-dir", str(output_dir), "--args-json", args_json,
    ]  # fmt: skip


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


# --- arguments ---------------------------------------------------------------------------------------------------


def test_parse_args_fills_defaults_and_takes_ints_as_floats():
    assert parse_args({}) == TrainArgs()
    args = parse_args({"epochs": 3, "lr": 1, "momentum": 0})
    assert (args.epochs, args.lr, args.momentum) == (3, 1.0, 0.0)
    assert isinstance(args.lr, float)


@pytest.mark.parametrize(
    "raw, problem",
    [
        ({"epochs": "five"}, "trainer.args.epochs: expected int, got str 'five'"),
        ({"epochs": True}, "trainer.args.epochs: expected int, got bool True"),
        ({"batch_size": 8.0}, "trainer.args.batch_size: expected int, got float 8.0"),
        ({"lr": "0.1"}, "trainer.args.lr: expected float, got str '0.1'"),
        ({"lr": float("nan")}, "trainer.args.lr: expected a finite number, got nan"),
        ({"foo": 1}, "trainer.args.foo: unknown argument; known: batch_size, epochs, lr, momentum, seed"),
        ({"epochs": 0}, "trainer.args.epochs: must be positive, got 0"),
        ({"batch_size": -1}, "trainer.args.batch_size: must be positive, got -1"),
        ({"lr": 0.0}, "trainer.args.lr: must be positive, got 0.0"),
        ({"momentum": 1}, "trainer.args.momentum: must be in [0, 1), got 1"),
        ({"seed": -1}, "trainer.args.seed: must be in [0, 2**32), got -1"),
    ],
)
def test_parse_args_names_the_argument_and_what_it_expects(raw, problem):
    with pytest.raises(ArgsError) as err:
        parse_args(raw)
    assert err.value.problems == [problem]


def test_parse_args_reports_every_problem_at_once():
    with pytest.raises(ArgsError) as err:
        parse_args({"epochs": "x", "gpus": 2, "lr": 0.1})
    assert [p.split(":")[0] for p in err.value.problems] == ["trainer.args.epochs", "trainer.args.gpus"]


def test_parse_args_rejects_a_value_that_is_not_an_object():
    with pytest.raises(ArgsError, match="expected a JSON object, got list"):
        parse_args([1, 2])  # type: ignore[arg-type]


# --- data --------------------------------------------------------------------------------------------------------


def test_export_digits_writes_one_npz_in_the_documented_format(tmp_path: Path):
    path = export_digits(tmp_path)
    assert path == tmp_path / "digits.npz" and list(tmp_path.iterdir()) == [path]
    with np.load(path) as npz:
        images, labels = npz["images"], npz["labels"]
    assert images.dtype == np.float32 and images.shape[1:] == (8, 8) and 0 <= images.min() < images.max() <= 1
    assert labels.dtype == np.int64 and labels.shape == (len(images),) and set(labels) == set(range(10))


def test_load_dataset_finds_nested_data_and_splits_it_80_20_the_same_way_every_time(data_dir: Path):
    first, second = load_dataset(data_dir), load_dataset(data_dir)
    (train_x, train_y), (test_x, test_y) = first.train.tensors, first.test.tensors
    assert train_x.shape[1:] == (1, 8, 8) and train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert len(test_y) == pytest.approx(0.2 * (len(train_y) + len(test_y)), abs=1)
    assert torch.equal(test_x, second.test.tensors[0]) and torch.equal(test_y, second.test.tensors[1])
    assert torch.bincount(test_y).min() >= 30  # stratified: every class is in the test set in proportion


def test_shards_of_two_ranks_are_disjoint_and_cover_the_data(data_dir: Path):
    splits = load_dataset(data_dir)
    n_train = len(splits.train)
    seen = []
    for rank in (0, 1):
        loader, sampler = train_shard(splits.train, batch_size=64, rank=rank, world_size=2, seed=0)
        sampler.set_epoch(1)
        seen.append(list(sampler))
        assert sum(len(labels) for _, labels in loader) == len(sampler)
    assert len(seen[0]) == len(seen[1])  # the same number of steps everywhere, or allreduce would hang
    assert set(seen[0]) | set(seen[1]) == set(range(n_train))
    assert len(set(seen[0]) & set(seen[1])) <= n_train % 2  # only padding repeats a sample
    test_sizes = [len(eval_shard(splits.test, rank=rank, world_size=2)) for rank in (0, 1)]
    assert sum(test_sizes) == len(splits.test)


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"images": np.zeros((4, 8, 8), np.float32)}, "missing array(s) labels"),
        ({"images": np.zeros((4, 8, 8), np.float32), "labels": np.zeros(3, np.int64)}, "expected images (N, 8, 8)"),
        ({"images": np.full((4, 8, 8), 16.0), "labels": np.zeros(4, np.int64)}, "image values must be in [0, 1]"),
        ({"images": np.zeros((4, 8, 8), np.float32), "labels": np.full(4, 10)}, "labels must be integers in 0..9"),
    ],
)
def test_load_dataset_rejects_a_malformed_file_naming_it(tmp_path: Path, arrays, problem):
    np.savez(tmp_path / "digits.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    assert str(tmp_path / "digits.npz") in str(err.value) and problem in str(err.value)


def test_load_dataset_rejects_a_file_that_is_not_an_npz_archive(tmp_path: Path):
    (tmp_path / "digits.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not an \.npz archive"):
        load_dataset(tmp_path)


# --- the program -------------------------------------------------------------------------------------------------


@pytest.mark.horovod
def test_two_horovod_processes_train_to_high_accuracy_and_rank_0_writes_the_outputs(
    data_dir: Path, tmp_path: Path, project_root: Path
):
    out = tmp_path / "outputs"
    result = run([*horovodrun(2), *trainer(data_dir, out, '{"epochs": 4}')], project_root, TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr

    assert EPOCH_LINE.findall(result.stdout) == [(str(epoch), "4") for epoch in range(1, 5)]
    assert "[1]<stdout>:epoch" not in result.stdout  # only rank 0 reports
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.95
    assert (metrics["epochs"], metrics["world_size"]) == (4, 2)
    assert metrics["loss"] > 0 and metrics["samples_per_second"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]  # no temporary files left

    checkpoint = torch.load(out / "model.pt")
    assert checkpoint.keys() == {"state_dict", "classes", "input_shape"}
    assert (checkpoint["classes"], checkpoint["input_shape"]) == (list(range(10)), [1, 8, 8])
    # The saved model is the one that was scored: its accuracy on the whole test set is the reported one.
    model = build_model()
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    images, labels = load_dataset(data_dir).test.tensors
    with torch.no_grad():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1.5 / len(labels))


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
    result = run(trainer(data, tmp_path / "out", "{}"), project_root, INVALID_TIMEOUT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and str(data) in result.stderr
    assert "epoch" not in result.stdout


@pytest.mark.horovod
def test_under_horovodrun_an_invalid_argument_stops_every_process_before_training(
    data_dir: Path, tmp_path: Path, project_root: Path
):
    result = run([*horovodrun(2), *trainer(data_dir, tmp_path / "out", '{"lr": "fast"}')], project_root, TRAIN_TIMEOUT)
    # horovodrun exits 1 whenever a process fails; it names the process's own exit code.
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "[0]<stderr>:error: trainer.args.lr: expected float, got str 'fast'" in output
    assert "[1]<stderr>:error:" not in output  # only rank 0 reports
    assert "Exit code: 2" in output
    assert "epoch" not in output

"""Preemption: SIGTERM writes a checkpoint and exits 75; running again resumes where it stopped.

Run directly, the trainer's own exit code is observable. Under a launcher it is not (horovodrun
and torchrun exit 1 whenever a process fails) but the launcher prints it ("Exit code: 75",
"exitcode  : 75"). Both distributions are held to the same behaviour.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch

from aztrain.adapters.compute.local.launchers import LAUNCHERS
from tests.integration.test_trainer import (
    DISTRIBUTIONS,
    TRAIN_TIMEOUT,
    history,
    launcher,
    run,
    trainer,
    write_digits,
)
from trainer.train import EXIT_PREEMPTED

Targets = Callable[[subprocess.Popen[str]], list[psutil.Process]]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("data"))


def one_core() -> None:
    # One core, so one compute thread: the interrupted and uninterrupted runs then do bit-identical arithmetic.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def the_process(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return [psutil.Process(proc.pid)]


def the_workers(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """The training processes (not the launcher, nor shells it starts them through), as a preemption signals them."""
    return [
        child
        for child in psutil.Process(proc.pid).children(recursive=True)
        if child.cmdline()[1:3] == ["-m", "trainer.train"]
    ]


def sigterm_after_epoch(
    command: list[str], cwd: Path, *, epoch: int, targets: Targets, preexec_fn: Callable[[], None] | None = None
) -> tuple[int, str]:
    """Run `command`, SIGTERM `targets` once it reports `epoch`; its exit code and output."""
    proc = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=preexec_fn
    )
    watchdog = threading.Timer(TRAIN_TIMEOUT, proc.kill)  # a hung trainer fails the test instead of hanging it
    watchdog.start()
    output = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if f"epoch {epoch}/" in line:
                for target in targets(proc):
                    target.send_signal(signal.SIGTERM)
        return proc.wait(), "".join(output)
    finally:
        watchdog.cancel()


def printed_epochs(output: str) -> list[int]:
    return [int(epoch) for epoch in re.findall(r"^(?:\[0\]<stdout>:)?epoch (\d+)/", output, re.MULTILINE)]


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_sigterm_checkpoints_and_exits_75_and_the_rerun_resumes_exactly_where_it_stopped(
    data_dir: Path, tmp_path: Path, project_root: Path, distribution: str
):
    args, cache = '{"epochs": 6}', ["--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "outputs"
    command = trainer(data_dir, out, args, *cache, distribution=distribution)
    code, output = sigterm_after_epoch(command, project_root, epoch=1, targets=the_process, preexec_fn=one_core)
    assert code == EXIT_PREEMPTED == 75, output
    assert "preempted: SIGTERM; checkpoint" in output and not (out / "metrics.json").exists()
    done = len(history(out))  # the epochs completed before it stopped, maybe part of the next too
    assert 1 <= done < 6

    resumed = subprocess.run(command, cwd=project_root, capture_output=True, text=True,
                             timeout=TRAIN_TIMEOUT, preexec_fn=one_core, check=False)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at epoch {done + 1}, batch " in resumed.stdout and "resuming from" in resumed.stdout
    assert printed_epochs(resumed.stdout) == list(range(done + 1, 7))  # no epoch trained twice
    assert "read from cache" in resumed.stdout  # the first run decoded the data and cached it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data_from_cache"] is True and metrics["epochs"] == 6

    reference = tmp_path / "uninterrupted"
    whole = subprocess.run(trainer(data_dir, reference, args, *cache, distribution=distribution), cwd=project_root,
                           capture_output=True, text=True, timeout=TRAIN_TIMEOUT, preexec_fn=one_core,
                           check=False)  # fmt: skip
    assert whole.returncode == 0, whole.stdout + whole.stderr
    expected = json.loads((reference / "metrics.json").read_text())
    # Model, optimizer, loss scaler, partial epoch and random state all came back: the same numbers, to the bit.
    assert metrics["parameter_digest"] == expected["parameter_digest"]
    assert [(e["loss"], e["accuracy"]) for e in history(out)] == [
        (e["loss"], e["accuracy"]) for e in history(reference)
    ]


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_under_a_launcher_every_rank_stops_at_the_same_step_and_the_rerun_resumes(
    data_dir: Path, tmp_path: Path, project_root: Path, distribution: str
):
    out = tmp_path / "outputs"
    args = json.dumps({"epochs": 5, "gradient_accumulation_steps": 2, "fp16_allreduce": True})
    flags = ["--cache-dir", str(tmp_path / "cache")]
    command = [*launcher(distribution, 2), *trainer(data_dir, out, args, *flags, distribution=distribution)]
    code, output = sigterm_after_epoch(command, project_root, epoch=1, targets=the_workers)
    assert code != 0 and LAUNCHERS[distribution].preempted_line().search(output), output
    assert output.count("preempted: SIGTERM; checkpoint") == 1  # rank 0's report
    done = len(history(out))
    assert 1 <= done < 5

    resumed = run(command, project_root, TRAIN_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at epoch {done + 1}, batch " in resumed.stdout
    assert printed_epochs(resumed.stdout) == list(range(done + 1, 6))
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in history(out)] == [1, 2, 3, 4, 5]
    assert metrics["ranks_in_sync"] is True and metrics["accuracy"] >= 0.9


def test_a_checkpoint_of_other_data_is_refused_with_exit_2_naming_it(
    data_dir: Path, tmp_path: Path, project_root: Path
):
    out = tmp_path / "outputs"
    stale = out / "checkpoints" / "checkpoint-e0003-s000000.pt"
    stale.parent.mkdir(parents=True)
    torch.save({"classes": ["cats", "dogs"], "input_shape": [3, 32, 32]}, stale)
    result = run(trainer(data_dir, out, "{}", "--cache-dir", str(tmp_path / "cache")), project_root, TRAIN_TIMEOUT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: checkpoint {stale} was trained on other data (classes ['cats', 'dogs']")
    assert "epoch" not in result.stdout

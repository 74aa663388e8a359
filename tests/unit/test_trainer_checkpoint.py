"""Checkpoint files: the newest two kept, the newest readable one resumed from, never code loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.checkpoint import checkpoints, load_newest, save_checkpoint


def state(epoch: int) -> dict[str, object]:
    return {"weights": torch.full((3,), float(epoch)), "progress": {"epoch": epoch}}


def test_the_newest_two_are_kept_ordered_by_epoch_then_batch(tmp_path: Path):
    for epoch, step in [(9, 0), (9, 40), (10, 0)]:
        save_checkpoint(tmp_path, state(epoch), epoch=epoch, step=step)
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-e0010-s000000.pt", "checkpoint-e0009-s000040.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in reversed(checkpoints(tmp_path))]


def test_the_newest_is_loaded_with_its_tensors_on_the_cpu(tmp_path: Path):
    save_checkpoint(tmp_path, state(1), epoch=1, step=0)
    save_checkpoint(tmp_path, state(2), epoch=2, step=0)
    path, loaded = load_newest(tmp_path)  # type: ignore[misc]
    assert path.name == "checkpoint-e0002-s000000.pt"
    assert torch.equal(loaded["weights"], torch.full((3,), 2.0)) and loaded["progress"] == {"epoch": 2}


def test_a_torn_newest_checkpoint_is_skipped_for_the_one_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    save_checkpoint(tmp_path, state(1), epoch=1, step=0)
    newest = save_checkpoint(tmp_path, state(2), epoch=2, step=0)
    newest.write_bytes(newest.read_bytes()[:50])  # a rename that was not atomic (blobfuse), then a crash
    path, loaded = load_newest(tmp_path)  # type: ignore[misc]
    assert path.name == "checkpoint-e0001-s000000.pt" and loaded["progress"] == {"epoch": 1}
    assert f"skipping unreadable checkpoint {newest}" in capsys.readouterr().err


class Payload:
    """Anything but tensors and plain containers: unpickling it could run code."""


def test_a_checkpoint_holding_arbitrary_objects_is_not_loaded(tmp_path: Path):
    torch.save({"progress": Payload()}, tmp_path / "checkpoint-e0001-s000000.pt")
    assert load_newest(tmp_path) is None


def test_no_folder_or_no_checkpoint_means_a_fresh_start(tmp_path: Path):
    assert load_newest(tmp_path / "missing") is None
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    assert load_newest(tmp_path) is None

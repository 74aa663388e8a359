"""Checkpoint files: `checkpoint-e<epochs done>-s<batches into the next>.pt`, the newest two kept."""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from trainer.outputs import torch_bytes, write_atomic

_NAME = re.compile(r"^checkpoint-e(\d+)-s(\d+)\.pt$")
# Two, not one: on storage where a rename is not atomic (blobfuse mounts) the newest may be torn,
# and the one before it is then the place to resume from.
KEEP = 2


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed from with this data; the message names it and says why."""


def save_checkpoint(folder: Path, state: dict[str, Any], *, epoch: int, step: int) -> Path:
    """Write `state` as the newest checkpoint and delete all but the newest `KEEP`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-e{epoch:04d}-s{step:06d}.pt"
    write_atomic(path, torch_bytes(state))
    for old in checkpoints(folder)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def load_newest(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint in `folder` and its state (tensors on the CPU), or None."""
    for path in checkpoints(folder):
        try:
            # weights_only: tensors and plain containers only, never code (checkpoint folders may be shared).
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            print(f"warning: skipping unreadable checkpoint {path}: {exc}", file=sys.stderr, flush=True)
    return None


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoint files in `folder`, newest (most epochs, then most batches) first."""
    if not folder.is_dir():
        return []
    found = [(match, path) for path in folder.iterdir() if (match := _NAME.match(path.name))]
    found.sort(key=lambda item: (int(item[0][1]), int(item[0][2])), reverse=True)
    return [path for _, path in found]

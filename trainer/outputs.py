"""What rank 0 writes into the output folder, each file atomically: model, metrics, and the data files it read."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

MODEL_FILE = "model.pt"
HISTORY_FILE = "metrics.jsonl"
METRICS_FILE = "metrics.json"
#: The files the trainer read, relative to its data folder: what lineage shows as consumed (see docs/trainer.md).
DATA_FILES_FILE = "data_files.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Readers (and an upload racing a crash) see the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def torch_bytes(obj: object) -> bytes:
    """`obj` as `torch.save` writes it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_model(output_dir: Path, state_dict: Mapping[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """`model.pt`: the weights (on the CPU, loadable anywhere) and `metadata` beside them."""
    output_dir.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().cpu() for name, tensor in state_dict.items()}
    write_atomic(output_dir / MODEL_FILE, torch_bytes({"state_dict": weights, **metadata}))


def write_history(output_dir: Path, history: list[dict[str, float]]) -> None:
    """`metrics.jsonl`, one line per completed epoch; rewritten whole, so a resumed run never repeats a line."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / HISTORY_FILE, "".join(json.dumps(entry) + "\n" for entry in history).encode())


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> None:
    """`metrics.json`, the final figures. Written last: its presence means the model beside it is complete."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / METRICS_FILE, json.dumps(metrics, indent=2).encode())


def write_data_files(output_dir: Path, files: list[str], samples: dict[str, int]) -> None:
    """`data_files.json`: every file read (relative to the data folder) and the samples of each file or image folder."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(output_dir / DATA_FILES_FILE, json.dumps({"files": files, "samples": samples}, indent=1).encode())

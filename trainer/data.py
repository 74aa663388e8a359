"""The training data: scikit-learn's digits images as one `.npz` file, a fixed train/test split, per-rank shards."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

DATA_FILE = "digits.npz"
IMAGE_SHAPE = (1, 8, 8)  # channels, height, width: what the model takes
NUM_CLASSES = 10
_TEST_FRACTION = 0.2
# Fixed, and not the training seed: every run is scored on the same test images, so runs compare.
_SPLIT_SEED = 0

Batch = tuple[torch.Tensor, ...]


class DataError(ValueError):
    """The data folder holds no usable data set; the message names the folder or file."""


@dataclass(frozen=True)
class Splits:
    """The whole data set, split: images are float32 (N, 1, 8, 8) in [0, 1], labels int64 (N,)."""

    train: TensorDataset
    test: TensorDataset


def export_digits(dest: Path) -> Path:
    """Write scikit-learn's digits as `dest/digits.npz` (`images` float32 (N, 8, 8) in [0, 1], `labels` int64)."""
    digits = load_digits()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / DATA_FILE
    np.savez_compressed(
        path,
        images=(digits.images / 16.0).astype(np.float32),  # the raw pixels are 0..16
        labels=digits.target.astype(np.int64),
    )
    return path


def load_dataset(data_dir: Path) -> Splits:
    """Find `digits.npz` anywhere under `data_dir`, check it, and split it 80/20 (stratified, fixed seed)."""
    path = _find(data_dir)
    images, labels = _read(path)
    try:
        train, test = train_test_split(
            np.arange(len(labels)), test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=labels
        )
    except ValueError as exc:  # e.g. a class with a single image cannot be stratified
        raise DataError(f"{path}: cannot split into train and test sets: {exc}") from exc
    x = torch.from_numpy(images).unsqueeze(1)  # add the channel axis
    y = torch.from_numpy(labels)
    return Splits(train=TensorDataset(x[train], y[train]), test=TensorDataset(x[test], y[test]))


def train_shard(
    dataset: TensorDataset, *, batch_size: int, rank: int, world_size: int, seed: int
) -> tuple[DataLoader[Batch], DistributedSampler[int]]:
    """This rank's shuffled shard of `dataset`; call `sampler.set_epoch(epoch)` before each epoch.

    Every rank must pass the same `seed`: the sampler shuffles identically everywhere and
    each rank takes its own slice, so the shards are disjoint and cover the set. All shards
    have the same number of batches (padding repeats a few samples), as Horovod's
    allreduce in every step needs.
    """
    sampler: DistributedSampler[int] = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler), sampler


def eval_shard(dataset: TensorDataset, *, rank: int, world_size: int) -> TensorDataset:
    """This rank's share of `dataset`, without padding, so that across ranks each sample is scored exactly once."""
    return TensorDataset(*(tensor[rank::world_size] for tensor in dataset.tensors))


def _find(data_dir: Path) -> Path:
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    # Blobs arrive under their prefix (data_dir/digits/digits.npz); prefer the shallowest, then by name.
    found = sorted(data_dir.rglob(DATA_FILE), key=lambda p: (len(p.parts), p))
    if not found:
        raise DataError(f"no {DATA_FILE} in data folder {data_dir} (write one with trainer.data.export_digits)")
    return found[0]


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = _load(path)
    missing = sorted({"images", "labels"} - arrays.keys())
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    images, labels = arrays["images"], arrays["labels"]
    n = len(labels)
    if n == 0 or images.shape != (n, *IMAGE_SHAPE[1:]) or labels.shape != (n,):
        raise DataError(
            f"{path}: expected images (N, 8, 8) and labels (N,) with N > 0, got {images.shape} and {labels.shape}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path}: images must be floats in [0, 1], got {images.dtype}")
    if not np.all((images >= 0) & (images <= 1)):  # NaN fails this too
        raise DataError(f"{path}: image values must be in [0, 1], got [{images.min()}, {images.max()}]")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise DataError(f"{path}: labels must be integers in 0..{NUM_CLASSES - 1}")
    return images.astype(np.float32), labels.astype(np.int64)


def _load(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as npz:  # never unpickle: downloaded data must not run code
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: unreadable .npz archive: {exc}") from exc

"""The training data: find the format under a data folder, decode it through the node-local cache, and split it.

Formats (see `trainer.digits` and `trainer.images`): `.npz` archives of digits anywhere under
the folder, else folders of class folders holding PNG/JPEG images. Every file found is read:
the data set is all of them, concatenated, and says which files gave how many samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from trainer.cache import DataCache, cache_key
from trainer.dataset import DataError, Dataset, concatenate
from trainer.digits import DATA_FILE, find_digits, read_digits
from trainer.digits import export_digits as export_digits  # the demo writes its data set through this module
from trainer.images import EXTENSIONS, find_image_folders, read_image_folder

_TEST_FRACTION = 0.2
# Fixed, and not the training seed: every run is scored on the same test images, so runs compare.
_SPLIT_SEED = 0


@dataclass(frozen=True)
class Loaded:
    """A data set and how it was obtained: `from_cache`, in `seconds`; `note` says so in words for the log."""

    dataset: Dataset
    from_cache: bool
    seconds: float
    note: str


@dataclass(frozen=True)
class Split:
    """Images uint8 (N, C, H, W) and labels int64 (N,), as tensors."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    """The data set split 80/20 into training and test images, the same way on every run."""

    train: Split
    test: Split


def load(data_dir: Path, *, cache: DataCache, snapshot_id: str | None, image_size: int) -> Loaded:
    """The data set under `data_dir`: from `cache` when it holds this data, else decoded and cached."""
    started = time.perf_counter()
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    key = cache_key(data_dir=data_dir, snapshot_id=snapshot_id, image_size=image_size)
    cached = cache.get(key)
    if cached is not None:
        seconds = time.perf_counter() - started
        return Loaded(cached, True, seconds, f"read from cache {cache.path(key)} in {seconds:.2f} s")
    dataset = decode(data_dir, image_size)
    try:
        stored = f"cached at {cache.put(key, dataset)}"
    except OSError as exc:  # a full or read-only disk costs speed, not the run
        stored = f"not cached: {exc}"
    seconds = time.perf_counter() - started
    return Loaded(dataset, False, seconds, f"decoded from {data_dir} in {seconds:.2f} s, {stored}")


def decode(data_dir: Path, image_size: int) -> Dataset:
    """Read every data file under `data_dir`, in whichever format it holds; `DataError` names what is wrong."""
    digits, folders = find_digits(data_dir), find_image_folders(data_dir)
    if digits and folders:
        raise DataError(
            f"{digits[0]} and the images in {folders[0].root} are two formats: "
            "a data folder holds .npz digits or image folders, not both"
        )
    if digits:
        return concatenate([read_digits(path, data_dir) for path in digits])
    if folders:
        return concatenate([read_image_folder(folder, image_size, data_dir) for folder in folders])
    raise DataError(
        f"no data in data folder {data_dir}: expected .npz digits such as {DATA_FILE} (see trainer.data.export_digits) "
        f"or one folder per class of {'/'.join(sorted(EXTENSIONS))} images"
    )


def split(dataset: Dataset) -> Splits:
    """80/20, stratified by class, with a fixed seed."""
    counts = np.bincount(dataset.labels, minlength=len(dataset.classes))
    scarce = next((name for name, count in zip(dataset.classes, counts, strict=True) if count < 2), None)
    if scarce is not None:
        raise DataError(f"class {scarce!r} has fewer than 2 images: each class needs one to train on and one to test")
    try:
        train, test = train_test_split(
            np.arange(len(dataset.labels)),
            test_size=_TEST_FRACTION,
            random_state=_SPLIT_SEED,
            stratify=dataset.labels,
        )
    except ValueError as exc:  # e.g. fewer test images than classes
        raise DataError(f"cannot split the data into train and test sets: {exc}") from exc
    images, labels = torch.from_numpy(dataset.images), torch.from_numpy(dataset.labels)
    return Splits(
        train=Split(images[train], labels[train]),
        test=Split(images[test], labels[test]),
    )

"""The digits format: scikit-learn's 8x8 digits as `.npz` archives (`make demo` uploads one `digits.npz`).

Every `.npz` under the data folder is one batch of digits: a retraining run after an upload
reads the new archive beside the old ones.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from trainer.dataset import DataError, Dataset, Part

DATA_FILE = "digits.npz"
SUFFIX = ".npz"
_SHAPE = (8, 8)
_CLASSES = tuple(str(digit) for digit in range(10))


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


def find_digits(data_dir: Path) -> list[Path]:
    """Every `.npz` archive under `data_dir`, at any depth: shallowest first, then by path (the concatenation order)."""
    return sorted((p for p in data_dir.rglob(f"*{SUFFIX}") if p.is_file()), key=lambda p: (len(p.parts), p))


def read_digits(path: Path, data_dir: Path) -> Dataset:
    """Check `path` (under `data_dir`) and decode it: one channel, pixels scaled from [0, 1] to 0..255."""
    arrays = _load(path)
    missing = sorted({"images", "labels"} - arrays.keys())
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    images, labels = arrays["images"], arrays["labels"]
    n = len(labels)
    if n == 0 or images.shape != (n, *_SHAPE) or labels.shape != (n,):
        raise DataError(
            f"{path}: expected images (N, 8, 8) and labels (N,) with N > 0, got {images.shape} and {labels.shape}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path}: images must be floats in [0, 1], got {images.dtype}")
    if not np.all((images >= 0) & (images <= 1)):  # NaN fails this too
        raise DataError(f"{path}: image values must be in [0, 1], got [{images.min()}, {images.max()}]")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(_CLASSES):
        raise DataError(f"{path}: labels must be integers in 0..{len(_CLASSES) - 1}")
    pixels = np.rint(images * 255).astype(np.uint8)[:, np.newaxis]  # add the channel axis
    name = path.relative_to(data_dir).as_posix()
    return Dataset(
        images=pixels,
        labels=labels.astype(np.int64),
        classes=_CLASSES,
        source="digits",
        parts=(Part(name, n),),
        files=(name,),
    )


def _load(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as npz:  # never unpickle: downloaded data must not run code
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: unreadable .npz archive: {exc}") from exc

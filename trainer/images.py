"""The image-folder format: `<folder>/<class>/<image>.png|.jpg|.jpeg`, one sub-folder per class."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.dataset import DataError, Dataset

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
# Pillow releases the GIL while it decodes, so threads decode in parallel; more than this only queue on the disk.
_MAX_DECODERS = 16


@dataclass(frozen=True)
class ImageFolder:
    """The images found: `files[i]` has label `labels[i]`, an index into `classes` (the sorted folder names)."""

    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]


def find_image_folder(data_dir: Path) -> ImageFolder | None:
    """The class folders under `data_dir` (at any depth, all siblings), or None if it holds no images.

    Raises `DataError` naming the file or folder when the layout is ambiguous or a class is empty.
    """
    images = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not images:
        return None
    stray = next((p for p in images if p.parent == data_dir), None)
    if stray is not None:
        raise DataError(f"{stray}: image outside any class folder; expected {data_dir}/<class>/<image>")
    roots = sorted({p.parent.parent for p in images})
    if len(roots) > 1:
        first, second = (next(p for p in images if p.parent.parent == root) for root in roots[:2])
        raise DataError(f"images at different depths, {first} and {second}: expected one folder of class folders")
    root = roots[0]
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    by_class = {d: [p for p in images if p.parent == d] for d in class_dirs}
    empty = next((d for d, files in by_class.items() if not files), None)
    if empty is not None:
        raise DataError(f"class folder {empty} has no images ({', '.join(sorted(EXTENSIONS))})")
    if len(class_dirs) < 2:
        raise DataError(f"{root}: found one class folder, {class_dirs[0].name}; a classifier needs two or more")
    files = [(p, label) for label, d in enumerate(class_dirs) for p in by_class[d]]
    return ImageFolder(
        root=root,
        classes=tuple(d.name for d in class_dirs),
        files=tuple(p for p, _ in files),
        labels=tuple(label for _, label in files),
    )


def read_image_folder(folder: ImageFolder, image_size: int) -> Dataset:
    """Decode every image as RGB, resized to `image_size` x `image_size`; `DataError` names an unreadable one."""
    workers = min(_MAX_DECODERS, len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pixels = list(pool.map(partial(_decode, size=image_size), folder.files))
    return Dataset(
        images=np.stack(pixels),
        labels=np.array(folder.labels, dtype=np.int64),
        classes=folder.classes,
        source="image_folder",
    )


def _decode(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8 pixels of one image."""
    try:
        with Image.open(path) as image:  # lazy: convert() below is what reads and decodes
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: not a readable image: {exc}") from exc
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)

"""The image-folder format: `<folder>/<class>/<image>.png|.jpg|.jpeg`, one sub-folder per class."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.dataset import DataError, Dataset, Part

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


def find_image_folders(data_dir: Path) -> list[ImageFolder]:
    """Every folder of class folders under `data_dir` (at any depth, side by side), or [] if it holds no images.

    Several folders (e.g. one per upload, `batch-1/<class>/`, `batch-2/<class>/`) are one data set:
    `trainer.dataset.concatenate` checks that they hold the same classes. Raises `DataError` naming
    the file or folder when the layout is ambiguous or a class is empty.
    """
    images = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    stray = next((p for p in images if p.parent == data_dir), None)
    if stray is not None:
        raise DataError(f"{stray}: image outside any class folder; expected {data_dir}/<class>/<image>")
    roots = sorted({p.parent.parent for p in images})
    nested = next(
        ((outer, inner) for outer in roots for inner in roots if inner != outer and inner.is_relative_to(outer)), None
    )
    if nested is not None:
        first, second = (next(p for p in images if p.parent.parent == root) for root in nested)
        raise DataError(
            f"images at different depths, {first} and {second}: expected folders of class folders side by side"
        )
    return [_image_folder(root, [p for p in images if p.parent.parent == root]) for root in roots]


def _image_folder(root: Path, images: list[Path]) -> ImageFolder:
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


def read_image_folder(folder: ImageFolder, image_size: int, data_dir: Path) -> Dataset:
    """Decode every image as RGB, resized to `image_size` x `image_size`; `DataError` names an unreadable one."""
    workers = min(_MAX_DECODERS, len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pixels = list(pool.map(partial(_decode, size=image_size), folder.files))
    return Dataset(
        images=np.stack(pixels),
        labels=np.array(folder.labels, dtype=np.int64),
        classes=folder.classes,
        source="image_folder",
        parts=(Part(folder.root.relative_to(data_dir).as_posix() + "/", len(folder.files)),),
        files=tuple(p.relative_to(data_dir).as_posix() for p in folder.files),
    )


def _decode(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8 pixels of one image."""
    try:
        with Image.open(path) as image:  # lazy: convert() below is what reads and decodes
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: not a readable image: {exc}") from exc
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)

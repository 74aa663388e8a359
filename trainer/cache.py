"""The node-local data cache: each data set decoded once into a compact `.npz`, reused by later epochs and runs.

Mounted blob storage is slow to read file by file, and decoding images costs CPU; an
uncompressed array file on local disk loads at disk speed. Entries are keyed by the
data snapshot (or, without one, by the names, sizes and times of the files), so new
data is a new key and never a stale hit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from trainer.dataset import Dataset, Part

# Bump when the decoded representation changes: old entries then simply stop matching.
_FORMAT_VERSION = 2  # 2: the files read and their samples are kept too
_SUFFIX = ".npz"


def cache_key(*, data_dir: Path, snapshot_id: str | None, image_size: int) -> str:
    """The entry for this data as the trainer decodes it.

    A snapshot id names immutable data, so it is the whole key and the mount is not even
    listed. Without one, the key covers every file's path, size and modification time.
    """
    if snapshot_id:
        identity: object = ["snapshot", snapshot_id]
    else:
        identity = ["files", sorted(_listing(data_dir))]
    canonical = json.dumps([_FORMAT_VERSION, identity, image_size], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class DataCache:
    """Decoded data sets in `folder`, one file per key; only the `keep` most recently used are kept."""

    def __init__(self, folder: Path, keep: int = 4) -> None:
        self.folder = folder
        self.keep = keep

    def path(self, key: str) -> Path:
        return self.folder / f"{key}{_SUFFIX}"

    def get(self, key: str) -> Dataset | None:
        """The cached data set, or None if there is none (or it cannot be read: it is then rebuilt)."""
        path = self.path(key)
        try:
            with np.load(path, allow_pickle=False) as npz:
                dataset = Dataset(
                    images=npz["images"],
                    labels=npz["labels"],
                    classes=tuple(str(name) for name in npz["classes"]),
                    source=str(npz["source"]),
                    parts=tuple(
                        Part(str(path), int(samples))
                        for path, samples in zip(npz["part_paths"], npz["part_samples"], strict=True)
                    ),
                    files=tuple(str(name) for name in npz["files"]),
                )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None
        os.utime(path)  # marks it recently used, for pruning
        return dataset

    def put(self, key: str, dataset: Dataset) -> Path:
        """Store `dataset` atomically (readers see all of it or nothing), then prune. Raises OSError."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        # Unique per process: the first local rank of every node may write the same key into a shared folder.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as file:
                np.savez(  # uncompressed: loading is a copy, which is the point
                    file,
                    images=dataset.images,
                    labels=dataset.labels,
                    classes=np.array(dataset.classes, dtype=np.str_),
                    source=np.array(dataset.source),
                    part_paths=np.array([part.path for part in dataset.parts], dtype=np.str_),
                    part_samples=np.array([part.samples for part in dataset.parts], dtype=np.int64),
                    files=np.array(dataset.files, dtype=np.str_),
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        self._prune()
        return path

    def _prune(self) -> None:
        entries = sorted(self.folder.glob(f"*{_SUFFIX}"), key=_mtime, reverse=True)
        for stale in entries[self.keep :]:
            with contextlib.suppress(FileNotFoundError):  # another node's writer pruned it first
                stale.unlink()


def _listing(data_dir: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, modification time) of every file: one stat each, as a mount's listing is slow."""
    found = []
    for folder, _, names in os.walk(data_dir):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            found.append((os.path.relpath(os.path.join(folder, name), data_dir), stat.st_size, stat.st_mtime_ns))
    return found


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0

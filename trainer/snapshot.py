"""Pin a mounted data folder to the run's data snapshot: exactly the blobs listed, unchanged, nothing else.

Azure ML mounts the job's whole data prefix, and uploads go on while a run trains; the
control plane took a snapshot of the prefix at launch (`aztrain.domain.retrain.Snapshot`, JSON:
`id`, `container`, `prefix`, `blobs` with `name` and `size`) and passes it as a file. The
trainer then reads the snapshot's files only, through a folder of links laid out as on the
mount, and stops with the file named if one is missing or no longer has its listed size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from trainer.dataset import DataError


@dataclass(frozen=True)
class PinnedData:
    """A folder holding links to the snapshot's files only: read data from `folder`."""

    folder: Path
    snapshot_id: str
    files: int
    ignored: int  # files on the mount that the snapshot does not list (e.g. uploaded after launch)


def pin(data_dir: Path, snapshot_file: Path, view: Path) -> PinnedData:
    """Link the snapshot's files from `data_dir` into the empty folder `view`; `DataError` names a missing file."""
    snapshot_id, listed = _read(snapshot_file)
    for relative, listed_size in listed:
        source = data_dir / relative
        if not source.is_file():
            raise DataError(f"{source}: listed in data snapshot {snapshot_id} but not in the data folder")
        size = source.stat().st_size
        if size != listed_size:
            raise DataError(
                f"{source}: {size} bytes, but data snapshot {snapshot_id} lists {listed_size}: "
                "the blob changed after the run was launched"
            )
        link = view / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source.resolve())
    # Names from the walk, no stat per file: listing a blob mount is slow enough already.
    on_mount = sum(len(names) for _, _, names in os.walk(data_dir))
    return PinnedData(view, snapshot_id, len(listed), on_mount - len(listed))


def _read(snapshot_file: Path) -> tuple[str, list[tuple[str, int]]]:
    """The snapshot's id and its files as (path under the mounted prefix, size)."""
    try:
        snapshot = json.loads(snapshot_file.read_text())
        snapshot_id, prefix = snapshot["id"], snapshot["prefix"]
        listed = [(blob["name"].removeprefix(prefix), blob["size"]) for blob in snapshot["blobs"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"{snapshot_file}: not a readable data snapshot ({exc!r})") from exc
    for relative, size in listed:
        # A listed name must stay inside the mount, and inside the view built from it.
        if not isinstance(size, int) or not relative or relative.startswith("/") or ".." in relative.split("/"):
            raise DataError(f"{snapshot_file}: not a valid data snapshot entry: {relative!r}, size {size!r}")
    return str(snapshot_id), listed

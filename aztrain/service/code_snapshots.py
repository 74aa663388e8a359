"""Code snapshots in the runs container: read one, check a manifest against it, and lay its files out for a job.

`aztrain code push` (and `aztrain submit`) write them (`aztrain.domain.code` says where); the
control plane only reads them, and checks every file against the listing's sha256 when it lays
one out, so a run's code is exactly what was pushed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from aztrain.domain.code import CODE_FOLDER, CodeSnapshot, code_listing_blob, entry_files
from aztrain.domain.errors import DataChanged, FieldProblem, ManifestError, NotFound
from aztrain.domain.manifest import JobManifest
from aztrain.service.ports import DataStore


def read_code_snapshot(data: DataStore, container: str, snapshot_id: str) -> CodeSnapshot:
    """The snapshot's listing; `NotFound` if it was never (completely) pushed."""
    try:
        raw = data.read(container, code_listing_blob(snapshot_id))
    except NotFound:
        raise NotFound("code snapshot", snapshot_id) from None
    snapshot = CodeSnapshot.from_json(json.loads(raw))
    if snapshot.id != snapshot_id:  # a listing is named by its content: anything else was tampered with
        raise DataChanged(container, code_listing_blob(snapshot_id))
    return snapshot


def check_code(data: DataStore, container: str, manifest: JobManifest) -> None:
    """`ManifestError` naming each file the manifest's trainer needs that its code snapshot lacks (or the snapshot)."""
    trainer = manifest.trainer
    if trainer.code is None:
        return
    try:
        snapshot = read_code_snapshot(data, container, trainer.code)
    except NotFound:
        raise ManifestError.at(
            "trainer.code", f"code snapshot {trainer.code} does not exist; push the folder with `aztrain code push DIR`"
        ) from None
    paths, problems = snapshot.paths(), list[FieldProblem]()
    wanted = entry_files(trainer.entrypoint)
    if not paths.intersection(wanted):
        problems.append(
            FieldProblem(
                "trainer.entrypoint",
                f"{trainer.entrypoint!r} is not in code snapshot {trainer.code}: "
                f"expected {' or '.join(wanted)} among its {len(paths)} file(s)",
            )
        )
    environment = trainer.environment
    needed = (environment.requirements or environment.conda) if environment else None
    if environment and needed and needed not in paths:
        problems.append(
            FieldProblem(
                f"trainer.environment.{environment.kind}", f"{needed!r} is not in code snapshot {trainer.code}"
            )
        )
    if problems:
        raise ManifestError(problems)


def materialise(data: DataStore, container: str, snapshot_id: str, folder: Path) -> Path:
    """The snapshot's files under `folder/<id>/`, downloaded once and each checked against its sha256.

    Staged beside the target and renamed into place, so a folder that exists is complete.
    """
    target = folder / snapshot_id
    if target.is_dir():
        return target
    snapshot = read_code_snapshot(data, container, snapshot_id)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
    try:
        prefix = f"{CODE_FOLDER}{snapshot_id}/"
        data.download(container, data.list(container, prefix), staging)
        for file in snapshot.files:
            path = staging / prefix / file.path
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != file.sha256:
                raise DataChanged(container, prefix + file.path)
        with contextlib.suppress(OSError):  # another job laid it out first: the same content
            os.replace(staging / prefix, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target

"""Names and places: run ids, backend job names, and where a run's blobs live.

One module, so the service, `aztrain plan`, the API and the tests agree without importing each other.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from pathlib import Path

#: What `new_run_id` makes: 13 digits, a hyphen, 6 hex digits.
RUN_ID_PATTERN = r"\d{13}-[0-9a-f]{6}"
#: A run's short id: its last 6 hex digits (random, or from its event's id), what people see and type.
#: The 13 digits before them are an inverted time, so runs of one day share them; the end tells runs apart.
SHORT_RUN_ID_PATTERN = r"[0-9a-f]{6}"
#: A job (and model) name: DNS-label style, 3-63 characters.
JOB_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]"
#: Backend job names are derived from run ids, so status events name their run.
BACKEND_JOB_PREFIX = "aztrain-"
#: Where snapshot documents are kept in the runs container (never a trigger: the runs container is not watched).
SNAPSHOTS_FOLDER = "_snapshots/"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def blob_path_problem(path: str) -> str | None:
    """Why `path` (a blob name or prefix) could climb out of where it is used, or None when it is safe.

    Blob names become local paths (downloads, mounts) and prefixes select what a run reads, so none may
    hold `..` or `.` segments, backslashes, control characters, or start with `/`.
    """
    if path.startswith("/"):
        return "must not start with '/'"
    if "\\" in path:
        return "must not contain backslashes; use '/'"
    if _CONTROL.search(path):
        return "must not contain control characters"
    if any(part in (".", "..") for part in path.split("/")):
        return "must not contain '.' or '..' segments"
    return None


def local_path(root: Path, blob_name: str) -> Path:
    """Where a blob lands below `root` when downloaded; `ValueError` for a name that would climb out."""
    problem = blob_path_problem(blob_name)
    target = (root / blob_name).resolve()
    if problem or not target.is_relative_to(root.resolve()):
        raise ValueError(f"blob name {blob_name!r} {problem or 'leaves the download folder'}")
    return target


def new_run_id(now: datetime) -> str:
    """A run id that sorts newest-first as a Table Storage RowKey: inverted epoch millis + randomness."""
    return f"{_inverted_millis(now):013d}-{secrets.token_hex(3)}"


def event_run_id(event_id: str, raised: datetime) -> str:
    """The run id an event makes, derived from its id and the time it was raised (the same on every delivery)."""
    return f"{_inverted_millis(raised):013d}-{hashlib.sha256(event_id.encode()).hexdigest()[:6]}"


def _inverted_millis(at: datetime) -> int:
    return 10**13 - int(at.timestamp() * 1000)


def short_run_id(run_id: str) -> str:
    """The short id people see and type: the random end of the run id (`8204141234567-3fa9c2` -> `3fa9c2`)."""
    return run_id.rsplit("-", 1)[-1]


def is_short_run_id(value: str) -> bool:
    return re.fullmatch(SHORT_RUN_ID_PATTERN, value) is not None


def is_run_id(value: str) -> bool:
    return re.fullmatch(RUN_ID_PATTERN, value) is not None


def backend_job_name(run_id: str, attempt: int) -> str:
    """The backend's job name for one attempt of a run: derived, so a repeated submit finds the same job."""
    return f"{BACKEND_JOB_PREFIX}{run_id}" + (f"-a{attempt}" if attempt > 1 else "")


def run_id_of(backend_job_id: str) -> str:
    """The run a backend job name belongs to (inverse of `backend_job_name`)."""
    name = backend_job_id.removeprefix(BACKEND_JOB_PREFIX)
    # Matched whole: a run id's own random part can look like an attempt suffix ("…-a81476").
    match = re.fullmatch(rf"({RUN_ID_PATTERN})(?:-a\d+)?", name)
    return match.group(1) if match else name


def snapshot_blob(snapshot_id: str) -> str:
    """Where a snapshot's blob list is kept in the runs container."""
    return f"{SNAPSHOTS_FOLDER}{snapshot_id}.json"


def run_output_prefix(job: str, run_id: str) -> str:
    """Where a run's logs and outputs live in the runs container."""
    return f"{job}/{run_id}/"

"""Names and places: run ids, backend job names, and where a run's blobs live.

One module, so the service, `aztrain plan`, the API and the tests agree without importing each other.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime

#: What `new_run_id` makes: 13 digits, a hyphen, 6 hex digits.
RUN_ID_PATTERN = r"\d{13}-[0-9a-f]{6}"
#: A job (and model) name: DNS-label style, 3-63 characters.
JOB_NAME_PATTERN = r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]"
#: Backend job names are derived from run ids, so status events name their run.
BACKEND_JOB_PREFIX = "aztrain-"
#: Where snapshot documents are kept in the runs container (never a trigger: the runs container is not watched).
SNAPSHOTS_FOLDER = "_snapshots/"


def new_run_id(now: datetime) -> str:
    """A run id that sorts newest-first as a Table Storage RowKey: inverted epoch millis + randomness."""
    inverted = 10**13 - int(now.timestamp() * 1000)
    return f"{inverted:013d}-{secrets.token_hex(3)}"


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

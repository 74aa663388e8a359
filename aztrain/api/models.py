"""The HTTP API's queries and bodies as pydantic models.

The same models validate requests, shape the JSON views (`aztrain.service.views`) and generate
the OpenAPI document (`functions/openapi.py`), so what is documented is what is checked.
It runs past 300 lines because it is the whole wire contract, one model per query and body;
the teams' and cost bodies are in `aztrain.api.teams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from aztrain.api.query_values import QUERY_BOOLEAN, QUERY_INTEGER, states
from aztrain.domain.layout import JOB_NAME_PATTERN, RUN_ID_PATTERN, SHORT_RUN_ID_PATTERN
from aztrain.domain.retrain import BlockerKind, WindowAction
from aztrain.domain.runs import RunState

#: The most items one page of a list holds; larger `limit`s are capped to it.
MAX_PAGE = 500
#: Run ids may be shortened to a unique prefix of at least this many characters.
MIN_RUN_PREFIX = 6
#: A run id, its short id (6 hex digits), or a prefix of the id: 6-13 digits, or 13 digits, '-' and up to 6 hex digits.
RUN_REF_PATTERN = rf"^(?:{RUN_ID_PATTERN}|{SHORT_RUN_ID_PATTERN}|\d{{{MIN_RUN_PREFIX},13}}|\d{{13}}-[0-9a-f]{{0,5}})$"
NAME_PATTERN = rf"^{JOB_NAME_PATTERN}$"
#: What a run's job may be called: a manifest name, or what a rejected manifest was filed under.
RUN_JOB_PATTERN = r"^[A-Za-z0-9._-]{1,63}$"
#: The longest log chunk one response carries; clients follow with the next offset.
MAX_LOG_CHUNK = 1024 * 1024
MAX_TAIL_LINES = 10_000
#: The largest log offset a client may ask for: far past any log, and exact in JavaScript (the dashboard).
MAX_LOG_OFFSET = 2**53 - 1

Timestamp = Annotated[datetime, PlainSerializer(lambda at: at.isoformat(), return_type=str)]


class _Query(BaseModel):
    """A query string as the schema gives it: every value is checked exactly as documented.

    Unknown parameters are ignored (Azure adds its own: `code=` carries the function key); an empty
    value is a value like any other, so `?continuation=` or `?all=` is refused unless the schema allows it.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Limit = Annotated[
    int,
    Field(ge=1, description=f"Items per page; at most {MAX_PAGE} (larger values are capped)"),
    AfterValidator(lambda n: min(n, MAX_PAGE)),
    QUERY_INTEGER,
]
Continuation = Annotated[
    str | None,
    Field(
        max_length=512,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next` of the previous page, unchanged: an opaque token. Any other value, "
        "though it has this shape, is a 400 bad-request naming `continuation`",
    ),
]


class PageQuery(_Query):
    """Paging of a list: newest or first items first, then `?continuation=<next>` until `next` is null."""

    limit: Limit = MAX_PAGE
    continuation: Continuation = None


class RunsQuery(_Query):
    """Runs, newest first, optionally of one job and in some states."""

    job: str | None = Field(default=None, pattern=RUN_JOB_PATTERN, description="Only runs of this job")
    state: Annotated[list[RunState], BeforeValidator(states)] = Field(
        default_factory=list, description="Only runs in these states (comma-separated or repeated)"
    )
    limit: Limit = 50
    continuation: Continuation = None


class SubmitQuery(_Query):
    force: Annotated[bool, QUERY_BOOLEAN] = Field(
        default=False, description="Run again even if an identical manifest's run is active or COMPLETED"
    )
    dry_run: Annotated[bool, QUERY_BOOLEAN] = Field(
        default=False, description="Answer what would happen (placement, cost, admission, wait); record nothing"
    )


class RunQuery(_Query):
    all: Annotated[bool, QUERY_BOOLEAN] = Field(
        default=False, description="Also the refused transitions (late or duplicate news, `applied: false`)"
    )


class LogsQuery(_Query):
    """Where to start reading a run's log: a byte offset (to follow it), or its last lines."""

    offset: Annotated[int, Field(ge=0, le=MAX_LOG_OFFSET), QUERY_INTEGER] | None = Field(
        default=None,
        description="Byte offset to read from (X-Log-Next-Offset); at or past the end, the body is empty "
        "and X-Log-Next-Offset repeats it. Not with `tail` (a 400)",
    )
    tail: Annotated[int, Field(ge=1, le=MAX_TAIL_LINES), QUERY_INTEGER] | None = Field(
        default=None, description="Only the last N lines. Not with `offset` (a 400)"
    )

    @model_validator(mode="after")
    def _one_start(self) -> LogsQuery:
        if self.offset is not None and self.tail is not None:
            raise ValueError("give either offset or tail, not both")
        return self


class RunOutputs(_Body):
    """Where a run keeps its files, as `container/blob` paths (they exist once written)."""

    container: str
    prefix: str
    logs: str
    model: str
    metrics: str
    epochs: str = Field(description="Per-epoch metrics, one JSON object a line, updated while training")


class TransitionView(_Body):
    seq: int
    from_state: RunState | None = Field(alias="from")
    to: RunState
    applied: bool
    cause: str
    at: Timestamp
    detail: str


class RunCost(_Body):
    """What a run costs: nodes x billed seconds x the price table's node-hour price (docs/teams.md)."""

    amount: float = Field(description="Money so far; final once the run has ended")
    final: bool
    currency: str
    billed_seconds: float = Field(description="From when its nodes were asked for (PROVISIONING) to its end, or now")
    nodes: int
    gpus: int
    vm_size: str
    tier: str
    region: str
    node_hour: float = Field(description="The price table's price of one node-hour of this size and tier")


class RunView(_Body):
    id: str
    short_id: str = Field(
        description="The id's last 6 hex digits: what the CLI and the dashboard show, and accept wherever a run id goes"
    )
    job: str
    state: RunState
    terminal: bool
    trigger: str
    source: str
    cause: str
    correlation_id: str = Field(
        description="Followed from the request (traceparent, X-Request-Id) or upload through history, job tags, "
        "logs and outbound events"
    )
    created_at: Timestamp
    updated_at: Timestamp
    cluster: str
    backend_job_id: str
    snapshot_id: str
    attempt: int
    manifest_hash: str
    error: str
    problems: list[FieldError] = Field(
        default_factory=list, description="A REJECTED run's manifest problems: each field and how to fix it"
    )
    waiting_reason: str | None = Field(None, description="Why a QUEUED run is not admitted yet; null once admitted")
    metrics: dict[str, Any]
    outputs: RunOutputs | None = Field(description="Null for a rejected run, which never ran")
    team: str = Field(description="The team whose quota and budget the run uses")
    submitted_by: str = Field(
        description="The signed-in user who submitted it; empty for a dropped manifest or retraining"
    )
    priority: int = Field(description="Its place among its team's waiting runs, higher first")
    cost: RunCost | None = Field(description="Null until the run is placed (it has asked for no nodes yet)")


class RunDetail(RunView):
    history: list[TransitionView]


class RunList(_Body):
    runs: list[RunView]
    next: str | None = Field(description="Continuation token of the next page; null on the last page")


class Submitted(_Body):
    run: RunView | None = Field(description="Null only while the job waits for data (`waiting`)")
    created: bool = Field(description="False when an existing run (or none) was returned instead of a new one")
    reason: str
    job: str
    waiting: bool = Field(
        description="True for a watching job whose prefix holds no data yet: it is registered, no run started, "
        "and the first upload opens its retraining window (Location: the window)"
    )


class JobView(_Body):
    name: str
    manifest_hash: str
    updated_at: Timestamp
    watch: str | None
    last_run_id: str
    manifest: dict[str, Any] = Field(description="The normalised manifest: defaults filled, durations in seconds")


class JobList(_Body):
    jobs: list[JobView]
    next: str | None


class BlockerView(_Body):
    kind: BlockerKind
    reason: str
    until: Timestamp | None = Field(description="When it stops holding the window, where that is known")
    run: str | None = Field(description="The active run (kind active_run)")


class WindowView(_Body):
    job: str
    action: WindowAction
    reason: str
    arrivals: int
    fires_at: Timestamp | None
    blockers: list[BlockerView] = Field(description="Everything holding the window back now, all at once")
    next: str = Field(description="What happens next, in a sentence")


class ClusterView(_Body):
    backend: str
    name: str
    desired_nodes: int
    observed_nodes: int
    active_runs: int
    last_scale_action: str
    last_scale_at: Timestamp | None
    seconds_to_zero: float | None


class ClusterList(_Body):
    clusters: list[ClusterView]


class DeadLetterView(_Body):
    """An event a handler could never act on: recorded with why, then acknowledged."""

    function: str
    event_id: str
    event_type: str
    subject: str
    reason: str
    at: Timestamp


class DeadLetterList(_Body):
    deadletters: list[DeadLetterView]
    next: str | None


class ModelView(_Body):
    name: str
    version: int
    run_id: str
    snapshot_id: str
    manifest_hash: str
    artifact: str
    metrics: dict[str, Any]
    registered_at: Timestamp
    promoted: bool
    gate: str


class ModelList(_Body):
    models: list[ModelView]
    next: str | None


class ModelVersions(_Body):
    name: str
    current: int | None = Field(description="The latest promoted version")
    versions: list[ModelView]


class SnapshotBlobView(_Body):
    name: str
    size: int
    etag: str
    version_id: str = Field(description="Set where blob versioning is on")
    read: bool | None = Field(default=None, description="Whether the trainer reported reading it; null: not reported")


class CodeFileView(_Body):
    path: str
    size: int
    sha256: str


class CodeSnapshotView(_Body):
    """A code snapshot: its files, named by their content."""

    id: str
    files: list[CodeFileView]


class SnapshotView(_Body):
    """The immutable list of blobs a run trained on."""

    id: str
    container: str
    prefix: str
    blobs: list[SnapshotBlobView]


class Lineage(_Body):
    """model → run → code and data snapshots → blobs (`read`: reported read by the trainer; null: unknown)."""

    model: ModelView
    run: RunView
    snapshot: SnapshotView
    data_read: list[str] | None = Field(
        default=None, description="The blobs the trainer reported reading; null: not reported"
    )
    code: CodeSnapshotView | None = Field(
        default=None, description="The run's code snapshot; null: the built-in trainer"
    )


class EpochMetrics(BaseModel):
    """One completed epoch, as the trainer wrote it: the figures below, and any others it adds."""

    model_config = ConfigDict(extra="allow", frozen=True)

    epoch: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    samples_per_second: float | None = None

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the figures the row has: a figure the trainer did not write is left out, not null."""
        written = self.model_fields_set | set(self.model_extra or {})
        return {name: value for name, value in handler(self).items() if name in written}


class Metrics(_Body):
    run_id: str
    state: RunState
    epochs: list[EpochMetrics] = Field(description="One row per completed epoch (epoch, loss, accuracy, ...)")
    final: dict[str, Any] | None = Field(description="The final figures once the run completed")


#: A file at the top of a run's outputs folder: `model.pt`, `metrics.json`, ...
OUTPUT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"


class OutputFile(_Body):
    name: str = Field(description="The file's name: GET /api/runs/{id}/outputs/{name} streams it")
    size: int = Field(description="Bytes")
    path: str = Field(description="Where it is, as `container/blob`")


class OutputList(_Body):
    """What a run wrote to its outputs folder (its checkpoints, below it, are left out)."""

    run_id: str
    files: list[OutputFile]


@dataclass(frozen=True)
class LogChunk:
    """What `GET /api/runs/{id}/logs` answers: log text from `offset`, and where the next read continues."""

    text: str
    offset: int
    next_offset: int


class Health(_Body):
    status: Literal["ok", "unhealthy"]
    backend: str
    storage: str


class FieldError(_Body):
    field: str = Field(description="The field (dotted path) or parameter at fault")
    message: str = Field(description="What is wrong and how to fix it")


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="A URI naming the kind of problem; documented in docs/api.md")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path")
    errors: list[FieldError] | None = Field(default=None, description="Field-level problems, when there are any")
    error: str = Field(description="The same as `detail` (kept for clients of the first API)")
    run: RunView | None = Field(default=None, description="A rejected manifest's run, recorded as REJECTED")
    candidates: list[str] | None = Field(default=None, description="Run ids an ambiguous prefix matches")
    state: RunState | None = Field(default=None, description="The run's state, when it forbids the request")
    correlation_id: str | None = Field(default=None, description="Quote it when reporting a server error")
    missing: str | None = Field(default=None, description="What the caller lacks for a 403: a role or a team")

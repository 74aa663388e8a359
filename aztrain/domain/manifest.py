"""The job manifest: parse, validate, normalise, hash, and publish its JSON Schema.

A manifest arrives as YAML (a blob dropped into `manifests/`) or JSON (HTTP).
Validation is strict: unknown keys, wrong types and out-of-range numbers are
rejected with a message naming the field and the fix, because a manifest that
is silently "fixed" trains the wrong thing on expensive GPUs. The guards that run
before the YAML parser (size, nesting, aliases) live in `documents`. It runs past 300 lines
because one answer names every problem: a section that is well-formed is checked further
(its arguments, its compute) even when another is not, beside the model it checks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from aztrain.domain.code import (
    BUILTIN_ENTRYPOINT,
    ENTRYPOINT_PATTERN,
    EnvironmentSpec,
    check_program_args,
    code_id_problem,
    entrypoint_problem,
    registered_shorthand,
)
from aztrain.domain.documents import MAX_CHARS, read_document
from aztrain.domain.errors import DOCUMENT, FieldProblem, ManifestError
from aztrain.domain.layout import blob_path_problem
from aztrain.domain.teams import MAX_PRIORITY, TEAM_PATTERN
from trainer.args import ArgsError
from trainer.args import parse_args as parse_trainer_args

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_NAME = r"^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])$"
S = TypeVar("S", bound=BaseModel)


def parse_duration(value: object, *, allow_zero: bool = False) -> int:
    """Turn `90s`, `10m`, `2h`, `1h30m` or a number of seconds into seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("expected a duration like '10m' or '2h'")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(value.strip())
        if not value.strip() or not match:
            raise ValueError(f"{value!r} is not a duration; use e.g. '90s', '10m', '2h' or '1h30m'")
        hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError("duration must be positive" if not allow_zero else "duration must not be negative")
    return seconds


_DURATION_SCHEMA = {"anyOf": [{"type": "string", "pattern": _DURATION.pattern}, {"type": "integer", "minimum": 0}]}


Seconds = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema({**_DURATION_SCHEMA, "description": "A positive duration: '90s', '10m', '2h', '1h30m', or seconds"}),
]
SecondsOrZero = Annotated[
    int,
    BeforeValidator(lambda value: parse_duration(value, allow_zero=True)),
    WithJsonSchema({**_DURATION_SCHEMA, "description": "A duration ('0s' for none): '90s', '10m', '2h', or seconds"}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataSpec(_Strict):
    """Where the job's training data lives; also what it may watch for retraining."""

    container: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", description="A blob container name")
    prefix: str = Field(default="", max_length=1024)

    @field_validator("prefix")
    @classmethod
    def _folder_prefix(cls, value: str) -> str:
        problem = blob_path_problem(value)
        if problem:
            raise ValueError(f"{problem}; write a folder below the container, e.g. 'digits/'")
        if "//" in value:
            raise ValueError("must not contain empty segments ('//'); write e.g. 'digits/2026/'")
        return value if not value or value.endswith("/") else value + "/"


#: How a job's processes are started and average their gradients: Horovod (horovodrun, MPI on Azure ML)
#: or PyTorch DDP (torchrun, PyTorchDistribution on Azure ML). `trainer.distributed.NAMES`, as a type.
Distribution = Literal["horovod", "pytorch"]


class TrainerSpec(_Strict):
    """What to run (the built-in trainer, or an entrypoint of a code snapshot), its arguments and environment."""

    # `code` comes first: the checks of the fields after it depend on it.
    code: str | None = Field(default=None, description="A code snapshot id: `aztrain code push DIR` prints it")
    # The document gives the entrypoint's syntax; whether it is in the snapshot is checked at submit.
    entrypoint: str = Field(default=BUILTIN_ENTRYPOINT, json_schema_extra={"pattern": ENTRYPOINT_PATTERN})
    args: dict[str, str | int | float | bool] = Field(default_factory=dict)
    environment: Annotated[EnvironmentSpec | None, BeforeValidator(registered_shorthand)] = None
    distribution: Distribution = Field(
        default="horovod", description="horovod (horovodrun / MPI) or pytorch (DDP: torchrun / PyTorchDistribution)"
    )

    @field_validator("code")
    @classmethod
    def _snapshot_id(cls, value: str | None) -> str | None:
        if value is not None and (problem := code_id_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("entrypoint")
    @classmethod
    def _in_code(cls, value: str, info: ValidationInfo) -> str:
        if problem := entrypoint_problem(value, code=info.data.get("code")):
            raise ValueError(problem)
        return value

    @field_validator("environment")
    @classmethod
    def _files_in_code(cls, value: EnvironmentSpec | None, info: ValidationInfo) -> EnvironmentSpec | None:
        if value is not None and value.kind in ("requirements", "conda") and info.data.get("code") is None:
            raise ValueError(f"{value.kind} names a file of trainer.code, which is not set")
        return value

    @property
    def builtin(self) -> bool:
        """Whether this runs the built-in trainer (no code snapshot)."""
        return self.code is None


class ComputeSpec(_Strict):
    """The cluster shape: a named profile (or VM size), nodes and training processes per node."""

    profile: str = "gpu-small"
    vm_size: str | None = None
    nodes: int = Field(default=1, ge=1, le=64)
    processes_per_node: int = Field(default=1, ge=1, le=16)
    priority: Literal["low", "dedicated"] = "dedicated"
    max_runtime: Seconds = 2 * 3600


class RetrainSpec(_Strict):
    """Optional: retrain the job when new data lands under its data prefix.

    A burst of uploads is one window: it closes once no blob has arrived for `debounce`,
    and launches a run if it holds at least `min_new_blobs` and the last completed run ended
    more than `cooldown` ago (none by default). `concurrency` says what happens when a run is
    already active.
    """

    on_data_arrival: bool = False
    include: list[str] = Field(default_factory=list, description="Globs relative to data.prefix; empty: all")
    exclude: list[str] = Field(default_factory=list, description="Globs relative to data.prefix")
    debounce: SecondsOrZero = 600
    min_new_blobs: int = Field(default=1, ge=1)
    cooldown: SecondsOrZero = 0  # a first upload after a run should retrain; a cooldown is a cost lever
    concurrency: Literal["queue", "skip", "replace"] = "queue"


_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|>|<=|<)\s*(best|[-+]?\d+(?:\.\d+)?)\s*$")


class RegistrySpec(_Strict):
    """Optional: how completed runs' models are registered and promoted."""

    promote_if: str | None = Field(
        default=None,
        description="'<metric> <op> <number>' or '<metric> <op> best', e.g. 'accuracy >= 0.95' or 'loss < best'",
    )

    @field_validator("promote_if")
    @classmethod
    def _gate(cls, value: str | None) -> str | None:
        if value is not None and not _GATE.match(value):
            raise ValueError(f"{value!r} is not a gate; write e.g. 'accuracy >= 0.95' or 'accuracy > best'")
        return value

    def gate(self) -> tuple[str, str, float | None] | None:
        """(metric, operator, threshold); threshold None means "the current best version"."""
        match = _GATE.match(self.promote_if or "")
        if not match:
            return None
        metric, op, bound = match.groups()
        return metric, op, None if bound == "best" else float(bound)


class JobManifest(_Strict):
    """A training job: `apiVersion: aztrain/v1`, `kind: TrainingJob`."""

    api_version: Literal["aztrain/v1"] = Field(alias="apiVersion")
    kind: Literal["TrainingJob"]
    name: str = Field(pattern=_NAME, description="DNS-label style, 3-63 characters")
    data: DataSpec
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    compute: ComputeSpec = Field(default_factory=ComputeSpec)
    retrain: RetrainSpec | None = None
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    # Teams (docs/teams.md): whose GPUs and budget the job's runs use, and their place in its queue.
    team: str | None = Field(
        default=None,
        pattern=TEAM_PATTERN,
        description="The team whose quota and budget the runs use; default: the submitter's only team, or the "
        "folder a manifest is dropped into (manifests/<team>/...). Set by the service when left out.",
    )
    queue_priority: int | None = Field(
        default=None,
        ge=0,
        le=MAX_PRIORITY,
        description="Order among the team's waiting runs, higher first; default: the team's default priority",
    )

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _retrain_needs_prefix(self) -> JobManifest:
        if self.retrain and self.retrain.on_data_arrival and not self.data.prefix:
            raise ValueError(
                "retrain.on_data_arrival needs data.prefix, so the job watches a folder, not a whole container"
            )
        return self

    def normalised(self) -> dict[str, Any]:
        """The canonical JSON form: defaults filled in, durations in seconds."""
        return self.model_dump(mode="json", by_alias=True)

    @property
    def content_hash(self) -> str:
        """sha256 of what the manifest sets: equal manifests have equal hashes however they were written.

        A value equal to its default counts as unset, so a field the schema gains later, with a default,
        changes no hash: an identical manifest resubmitted after an upgrade is still identical.
        """
        chosen = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return hashlib.sha256(json.dumps(chosen, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    @property
    def watches_data(self) -> bool:
        return bool(self.retrain and self.retrain.on_data_arrival)


#: A check of a manifest's `compute` against where it would run (the backend's profiles): raises `ManifestError`.
ComputeCheck = Callable[[ComputeSpec], object]


def parse_manifest(
    text: str | bytes, *, source: str = "", max_bytes: int = 64 * 1024, compute_check: ComputeCheck | None = None
) -> JobManifest:
    """Parse YAML or JSON text into a validated manifest, or raise `ManifestError` naming every problem."""
    document = read_document(text, source=source, max_bytes=max_bytes)
    manifest = manifest_from_dict(document, source=source, compute_check=compute_check)
    stored = len(json.dumps(manifest.normalised()))
    if stored > MAX_CHARS:  # what the store can hold of one manifest (documents.MAX_CHARS)
        too_long = f"manifest comes to {stored:,} characters as normalised JSON; the limit is {MAX_CHARS:,}"
        raise ManifestError([FieldProblem(DOCUMENT, too_long)], source=source)
    return manifest


def manifest_from_dict(document: object, *, source: str = "", compute_check: ComputeCheck | None = None) -> JobManifest:
    """Validate an already-decoded document: the schema, the trainer's arguments and `compute_check`, all at once.

    Each section that is well-formed on its own is checked further even when another section is not,
    so one answer names every problem, not the first layer of them.
    """
    if not isinstance(document, dict):
        expected = f"expected a mapping with apiVersion, kind, name, data; got {type(document).__name__}"
        raise ManifestError([FieldProblem(DOCUMENT, expected)], source=source)
    problems: list[FieldProblem] = []
    try:
        manifest: JobManifest | None = JobManifest.model_validate(document)
    except ValidationError as exc:
        manifest = None
        problems += [_describe(err) for err in exc.errors()]
    trainer = manifest.trainer if manifest else _section(TrainerSpec, document.get("trainer", {}))
    if trainer is not None:
        try:
            (parse_trainer_args if trainer.builtin else check_program_args)(dict(trainer.args))
        except ArgsError as exc:  # each problem names its trainer.args.<name>
            problems += [FieldProblem(field, message) for field, message in exc.problems]
    compute = manifest.compute if manifest else _section(ComputeSpec, document.get("compute", {}))
    if compute is not None and compute_check is not None:
        try:
            compute_check(compute)
        except ManifestError as exc:
            problems += exc.problems
    if problems or manifest is None:
        raise ManifestError(problems, source=source)
    return manifest


def _section(model: type[S], value: object) -> S | None:
    """One section of a manifest on its own, or None where it has problems (already named by the whole)."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _describe(error: Any) -> FieldProblem:
    field = ".".join(str(part) for part in error["loc"]) or DOCUMENT
    kind = error["type"]
    if kind == "extra_forbidden":
        return FieldProblem(field, "unknown field; remove it or check its spelling against `aztrain schema`")
    if kind == "missing":
        return FieldProblem(field, "required field is missing")
    if kind == "literal_error":
        return FieldProblem(field, error["msg"].lower())
    if kind == "string_pattern_mismatch" and field == "name":
        return FieldProblem(
            field, "use 3-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
        )
    message = error["msg"].removeprefix("Value error, ")
    return FieldProblem(field, f"{message[:1].lower()}{message[1:]} (got {error.get('input')!r})")


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of a manifest, generated from the model (`aztrain schema`)."""
    schema = JobManifest.model_json_schema(by_alias=True)
    schema["$id"] = "https://aztrain.dev/schemas/trainingjob-v1.json"
    schema["title"] = "aztrain TrainingJob (aztrain/v1)"
    return schema

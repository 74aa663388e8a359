"""User code: snapshots (an immutable, content-hashed set of files), their entrypoint, arguments and environment.

Like a data snapshot, a code snapshot is named by what it holds (same files, same id), so an
unchanged folder is never uploaded twice and a run's code can never change under it. Its
files live in the runs container under `_code/<id>/`, and its listing, written last, at
`_code/<id>.json`: a listing that exists names a complete snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aztrain.domain.layout import blob_path_problem
from trainer.args import ArgsError

#: The built-in trainer: what runs without a code snapshot.
BUILTIN_ENTRYPOINT = "trainer.train"
CODE_FOLDER = "_code/"
CODE_ID_PATTERN = r"code-[0-9a-f]{24}"
#: What one snapshot may hold: code, not data (data goes under a data prefix). Far below Azure ML's
#: own limit on a job's snapshot (300 MB and 2,000 files: learn.microsoft.com/azure/machine-learning/
#: how-to-save-write-experiment-files#storage-limits-of-experiment-snapshots).
MAX_CODE_BYTES = 25 * 1024 * 1024
MAX_CODE_FILES = 1000
_ENVIRONMENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}@(latest|[A-Za-z0-9][A-Za-z0-9._-]{0,30})$"
_IMAGE = r"^[a-z0-9][a-z0-9._/:@-]{0,254}$"  # registry/repository[:tag|@digest], no spaces or shell characters
_ARG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: What `entrypoint_problem` accepts, as one pattern for the manifest's JSON Schema: a module, or a relative
#: `.py` path without '.'/'..' segments, '//', backslashes or control characters.
ENTRYPOINT_PATTERN = (
    r"^(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    # `(?!\n)`: Python's `$` would match before a final newline too.
    r"|(?!/)(?!.*//)(?!(?:.*/)?\.{1,2}(?:/|$))[^\\\x00-\x1f\x7f]*[^/\\\x00-\x1f\x7f]\.py)$(?!\n)"
)
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class CodeFile:
    """One file of a snapshot: its path inside the folder ('/'-separated), size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class CodeSnapshot:
    """The files of a code folder, in path order."""

    files: tuple[CodeFile, ...]

    @property
    def id(self) -> str:
        canonical = json.dumps([[f.path, f.size, f.sha256] for f in self.files], separators=(",", ":"))
        return "code-" + hashlib.sha256(canonical.encode()).hexdigest()[:24]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def paths(self) -> frozenset[str]:
        return frozenset(f.path for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> CodeSnapshot:
        return cls(tuple(CodeFile(**f) for f in value["files"]))


def code_snapshot(files: list[CodeFile]) -> CodeSnapshot:
    """The snapshot of these files; `ValueError` naming what is wrong when a path cannot be one or they are too big."""
    problems = [
        f"{f.path!r}: {p}" for f in files if (p := blob_path_problem(f.path) or ("empty" if not f.path else None))
    ]
    if problems:
        raise ValueError("; ".join(problems))
    snapshot = CodeSnapshot(tuple(sorted(files, key=lambda f: f.path)))
    if len(snapshot.files) > MAX_CODE_FILES or snapshot.size > MAX_CODE_BYTES:
        raise ValueError(
            f"{len(snapshot.files)} file(s), {snapshot.size / 1e6:.1f} MB: a code snapshot holds at most "
            f"{MAX_CODE_FILES} files and {MAX_CODE_BYTES // 2**20} MiB (data belongs under a data prefix)"
        )
    if not snapshot.files:
        raise ValueError("the folder holds no files")
    return snapshot


def code_listing_blob(snapshot_id: str) -> str:
    """Where a code snapshot's listing is kept in the runs container."""
    return f"{CODE_FOLDER}{snapshot_id}.json"


def code_file_blob(snapshot_id: str, path: str) -> str:
    """Where one file of a code snapshot is kept in the runs container."""
    return f"{CODE_FOLDER}{snapshot_id}/{path}"


def code_id_problem(code: str) -> str | None:
    """Why `code` is not a code snapshot id, or None."""
    if re.fullmatch(CODE_ID_PATTERN, code):
        return None
    return (
        f"{code!r} is not a code snapshot id (code-<24 hex digits>); `aztrain submit` uploads a folder "
        "named here, a dropped manifest names the id `aztrain code push DIR` prints"
    )


def entrypoint_problem(entrypoint: str, *, code: str | None) -> str | None:
    """Why `entrypoint` cannot run: without `code` only the built-in trainer; with it, a module or a relative
    `.py` path inside the snapshot. None when it can."""
    if code is None:
        if entrypoint == BUILTIN_ENTRYPOINT:
            return None
        return (
            f"{entrypoint!r} is not allowed without trainer.code: name the snapshot of your code there, "
            f"or leave the entrypoint as {BUILTIN_ENTRYPOINT!r} (the built-in trainer)"
        )
    if entrypoint.endswith(".py"):
        problem = blob_path_problem(entrypoint)
        if problem:
            return f"{entrypoint!r}: a path inside the code snapshot {problem}"
        if "//" in entrypoint or not entrypoint.removesuffix(".py").rsplit("/", 1)[-1]:
            return f"{entrypoint!r}: not a file path; write e.g. 'train.py' or 'src/train.py'"
        return None
    if not _MODULE.fullmatch(entrypoint):
        return (
            f"{entrypoint!r}: neither a module (e.g. 'mypackage.train') nor a relative .py path (e.g. 'src/train.py')"
        )
    return None


def entry_files(entrypoint: str) -> tuple[str, ...]:
    """The files of a snapshot any of which makes `entrypoint` runnable (a script, a module or a package's __main__)."""
    if entrypoint.endswith(".py"):
        return (entrypoint,)
    path = entrypoint.replace(".", "/")
    return (f"{path}.py", f"{path}/__main__.py")


def check_program_args(args: dict[str, str | int | float | bool]) -> None:
    """A user program's `trainer.args`: each becomes `--name value`, so names must be flag names and no
    string value may read as an option. `ArgsError` names every bad one."""
    problems: list[tuple[str, str]] = []
    for name, value in args.items():
        if not _ARG_NAME.fullmatch(name):
            problems.append(
                (f"trainer.args.{name}", "not a flag name; use letters, digits, '-' and '_' from a letter on")
            )
        elif isinstance(value, str) and value.startswith("-"):
            problems.append(
                (f"trainer.args.{name}", f"{value!r} starts with '-': the program would read it as an option")
            )
    if problems:
        raise ArgsError(problems)


def registered_shorthand(value: object) -> object:
    """`environment: name@version` is short for `environment: {registered: name@version}`."""
    return {"registered": value} if isinstance(value, str) else value


class EnvironmentSpec(BaseModel):
    """Where the program runs: exactly one of a registered environment, an image, or a file of the code snapshot."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    registered: str | None = Field(
        default=None, pattern=_ENVIRONMENT, description="An Azure ML environment, 'name@version' or 'name@latest'"
    )
    image: str | None = Field(
        default=None, pattern=_IMAGE, description="A container image reference, e.g. 'mcr.microsoft.com/x/y:1.0'"
    )
    requirements: str | None = Field(default=None, description="A pip requirements file in the code snapshot")
    conda: str | None = Field(default=None, description="A conda environment file in the code snapshot (Azure ML)")

    @field_validator("requirements", "conda")
    @classmethod
    def _inside_snapshot(cls, value: str | None) -> str | None:
        if value is not None and (problem := blob_path_problem(value) or ("empty" if not value else None)):
            raise ValueError(f"a path inside the code snapshot {problem}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvironmentSpec:
        given = [name for name, value in self.model_dump().items() if value is not None]
        if len(given) != 1:
            raise ValueError(f"name exactly one of registered, image, requirements, conda; got {given or 'none'}")
        return self

    @property
    def kind(self) -> str:
        """registered | image | requirements | conda."""
        return next(name for name, value in self.model_dump().items() if value is not None)


def with_pushed_code(document: object, push: Callable[[str], str]) -> object:
    """A decoded manifest whose `trainer.code` names a folder, naming instead the snapshot `push(folder)` returns."""
    trainer = document.get("trainer") if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(trainer, dict):
        return document
    code = trainer.get("code")
    if not isinstance(code, str) or re.fullmatch(CODE_ID_PATTERN, code):
        return document
    return {**document, "trainer": {**trainer, "code": push(code)}}

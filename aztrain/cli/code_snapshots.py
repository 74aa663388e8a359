"""`aztrain code push DIR`, and `aztrain submit`'s upload of a manifest's code folder: content-hashed code snapshots.

A snapshot is named by its files' paths and sha256 (`aztrain.domain.code`), so pushing an
unchanged folder finds its listing already there and uploads nothing. The files go first and
the listing last: a listing that exists names a complete snapshot.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from aztrain.cli.app import AccountUrlOption, ConnectionStringOption, JsonOption, Session, app, begin, examples
from aztrain.domain.code import (
    MAX_CODE_FILES,
    CodeFile,
    CodeSnapshot,
    code_file_blob,
    code_listing_blob,
    code_snapshot,
    with_pushed_code,
)
from aztrain.domain.errors import AztrainError

#: Never code: caches, virtual environments and version control.
IGNORED_FOLDERS = frozenset({"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
IGNORED_SUFFIXES = (".pyc", ".pyo")
DEFAULT_CONTAINER = "runs"  # the control plane's runs container (AZTRAIN_RUNS_CONTAINER)

code_app = typer.Typer(help="Code snapshots: your training code, content-hashed and immutable.", no_args_is_help=True)
app.add_typer(
    code_app,
    name="code",
    epilog=examples("aztrain code push examples/pytorch-csv", "aztrain submit examples/pytorch-csv/job.yaml --wait"),
)


class CodeError(AztrainError):
    """A folder cannot be a code snapshot: missing, empty, too big, or a file name that cannot be a blob name."""


def snapshot_of_folder(folder: Path) -> tuple[CodeSnapshot, dict[str, Path]]:
    """The snapshot `folder` makes, and each of its files by path; `CodeError` naming what is wrong."""
    if not folder.is_dir():
        raise CodeError(f"{folder}: not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not IGNORED_FOLDERS.intersection(relative.parts) and path.suffix not in IGNORED_SUFFIXES:
            found[relative.as_posix()] = path
        if len(found) > MAX_CODE_FILES:  # stop reading a data folder given by mistake
            break
    files = [CodeFile(name, path.stat().st_size, _sha256(path)) for name, path in found.items()]
    try:
        return code_snapshot(files), found
    except ValueError as exc:
        raise CodeError(f"{folder}: {exc}") from None


def push_code(service: Any, container: str, folder: Path) -> tuple[CodeSnapshot, bool]:
    """Upload `folder` as a code snapshot unless it is there already. Returns it and whether it was uploaded."""
    snapshot, files = snapshot_of_folder(folder)
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    listing = client.get_blob_client(code_listing_blob(snapshot.id))
    if listing.exists():
        return snapshot, False
    for name, path in files.items():
        with path.open("rb") as handle:
            client.upload_blob(code_file_blob(snapshot.id, name), handle, overwrite=True)
    listing.upload_blob(json.dumps(snapshot.to_json()).encode(), overwrite=True)
    return snapshot, True


def manifest_with_code(session: Session, manifest: Path, *, container: str = DEFAULT_CONTAINER) -> tuple[bytes, str]:
    """The manifest to send: as written, or, when its `trainer.code` names a folder (relative to the manifest),
    as JSON naming the snapshot that folder was pushed as; and what was pushed, in words (or '')."""
    text = manifest.read_bytes()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return text, ""  # the control plane names what is wrong with it
    pushed: list[str] = []

    def push(folder: str) -> str:
        if not (manifest.parent / folder).is_dir():
            return folder  # not a folder here: the control plane says what a code snapshot id looks like
        snapshot, uploaded = push_code(_blob_service(session), container, manifest.parent / folder)
        pushed.append(f"{'pushed' if uploaded else 'already pushed'} {folder} as code snapshot {snapshot.id}")
        return snapshot.id

    rewritten = with_pushed_code(document, push)
    return (json.dumps(rewritten).encode(), pushed[0]) if pushed else (text, "")


def _blob_service(session: Session) -> Any:
    from aztrain.cli.upload import connect

    connection = session.connection
    return connect(connection_string=connection.storage_connection_string, account_url=connection.storage_account_url)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


@code_app.command(
    "push",
    epilog=examples("aztrain code push examples/pytorch-csv", "aztrain code push ./src --json | jq -r .id"),
)
def push(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="The folder of training code.")],
    container: Annotated[str, typer.Option(help="The control plane's runs container.")] = DEFAULT_CONTAINER,
    connection_string: ConnectionStringOption = None,
    account_url: AccountUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload a folder as a code snapshot (limits: docs/trainer.md); an unchanged folder is not uploaded again."""
    session, out = begin(ctx, as_json)
    session.extra_flags = {"storage_connection_string": connection_string, "storage_account_url": account_url}
    snapshot, uploaded = push_code(_blob_service(session), container, folder)
    if as_json:
        out.json({**snapshot.to_json(), "uploaded": uploaded})
        return
    what = "uploaded" if uploaded else "already there (same files): nothing uploaded"
    out.line(f"code snapshot {snapshot.id}: {len(snapshot.files)} file(s), {snapshot.size} B, {what}")
    out.note(f"name it in a manifest: trainer: {{code: {snapshot.id}, entrypoint: train.py}}")

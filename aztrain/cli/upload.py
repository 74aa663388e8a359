"""`aztrain upload`: a folder into a blob container under a prefix, in parallel, resumable.

- Files already present with the same size and Content-MD5 are skipped, so a second run
  (or a run after an interruption) uploads only what is missing or changed.
- Small files are one Put Blob each; large ones are staged in blocks, all in one thread pool.
  Block ids are derived from the file's MD5 and the block's index, so the blocks an
  interrupted upload staged (uncommitted) are found and reused instead of sent again.
- Every blob gets its Content-MD5, also those committed from blocks (the service computes
  it only for single-shot uploads).
- Blob names never leave the prefix: `..`, absolute paths and backslashes are refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient, ContentSettings

from aztrain.domain.errors import AztrainError

#: Files above this size are sent in staged blocks of this size.
BLOCK_SIZE = 8 * 1024 * 1024
DEFAULT_WORKERS = 8
_READ_SIZE = 1024 * 1024


class UploadError(AztrainError):
    """The upload cannot start: a bad prefix, a file name that cannot be a blob name, a missing folder."""


class UploadProgress(Protocol):
    """Told about work as it is done (always from the thread that called `upload_folder`)."""

    def start(self, *, files: int, total_bytes: int) -> None: ...

    def advance(self, *, nbytes: int, files: int) -> None: ...


@dataclass(frozen=True)
class LocalFile:
    path: Path
    blob: str
    size: int


@dataclass
class UploadSummary:
    """What an upload did. `uploaded_bytes` counts only what was sent (reused blocks are not)."""

    container: str
    prefix: str
    files: int = 0
    uploaded: int = 0
    skipped: int = 0
    bytes: int = 0
    uploaded_bytes: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def normalise_prefix(prefix: str) -> str:
    """`digits` and `digits/` both mean the folder `digits/`; '' is the container's root."""
    if "\\" in prefix or prefix.startswith("/") or ".." in PurePosixPath(prefix).parts:
        raise UploadError(f"prefix {prefix!r}: use a relative folder with '/' separators and no '..'")
    parts = [p for p in PurePosixPath(prefix).parts if p != "."]
    return "/".join(parts) + "/" if parts else ""


def blob_name(prefix: str, relative: str) -> str:
    """The blob for a file at `relative` (a '/'-separated path) under a normalised `prefix`."""
    path = PurePosixPath(relative)
    if not relative or "\\" in relative or path.is_absolute() or any(p in ("..", ".", "") for p in relative.split("/")):
        raise UploadError(f"{relative!r} cannot be a blob name under {prefix!r}: no '..', '.', '\\\\' or leading '/'")
    return prefix + relative


def local_files(folder: Path, prefix: str) -> list[LocalFile]:
    """Every regular file below `folder`, with its blob name, in name order."""
    if not folder.is_dir():
        raise UploadError(f"{folder} is not a folder")
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            if path.is_file():
                found.append(
                    LocalFile(path, blob_name(prefix, path.relative_to(folder).as_posix()), path.stat().st_size)
                )
    return found


def file_md5(path: Path) -> bytes:
    digest = hashlib.md5()  # what Content-MD5 holds; not used for security
    with path.open("rb") as source:
        while chunk := source.read(_READ_SIZE):
            digest.update(chunk)
    return digest.digest()


def connect(*, connection_string: str = "", account_url: str = "", workers: int = DEFAULT_WORKERS) -> BlobServiceClient:
    """A blob service client: on an account URL with `DefaultAzureCredential`, else on a connection string."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    # One pooled connection per worker; the default pool (10) would drop and reopen connections.
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(workers, 10))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    transport = RequestsTransport(session=session, session_owner=True)
    if account_url:
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(account_url, credential=DefaultAzureCredential(), transport=transport)
    return BlobServiceClient.from_connection_string(connection_string, transport=transport)


@dataclass
class _Staging:
    """A large file being sent in blocks: what is still out, and its block list to commit."""

    file: LocalFile
    md5: bytes
    block_ids: list[str]
    pending: int = 0
    reused_bytes: int = 0
    blocks: list[tuple[str, int, int]] = field(default_factory=list)  # (id, offset, length) to stage


class Uploader:
    """Uploads one folder: `Uploader(container).upload(folder, prefix)`."""

    def __init__(
        self,
        container: ContainerClient,
        *,
        workers: int = DEFAULT_WORKERS,
        block_size: int = BLOCK_SIZE,
        progress: UploadProgress | None = None,
    ) -> None:
        self.container = container
        self.block_size = block_size
        self.progress = progress
        # Workers only talk to storage; the calling thread runs every `then` below, so the books need no lock.
        self._pending: dict[Future[Any], Callable[[Any], None]] = {}
        self._summary = UploadSummary(container.container_name, "")
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="upload")

    def upload(self, folder: Path, prefix: str) -> UploadSummary:
        started = time.monotonic()
        prefix = normalise_prefix(prefix)
        files = local_files(folder, prefix)
        summary = self._summary = UploadSummary(self.container.container_name, prefix, files=len(files))
        summary.bytes = sum(f.size for f in files)
        if self.progress:
            self.progress.start(files=len(files), total_bytes=summary.bytes)
        remote = self._remote(prefix)
        with self._pool:
            try:
                for file in files:
                    self._schedule(
                        partial(self._first_step, file, remote.get(file.blob)),
                        partial(self._after_first, file),
                    )
                while self._pending:
                    done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._pending.pop(future)(future.result())  # an error stops the upload here
            except BaseException:
                # Stop promptly (an error, Ctrl-C): what finished is skipped or reused next time.
                self._pool.shutdown(wait=True, cancel_futures=True)
                raise
        summary.seconds = time.monotonic() - started
        return summary

    def _schedule(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        self._pending[self._pool.submit(work)] = then

    def _remote(self, prefix: str) -> dict[str, tuple[int, bytes | None]]:
        """Size and Content-MD5 of every blob under the prefix (the container is created if missing)."""
        try:
            return {
                b.name: (b.size, bytes(b.content_settings.content_md5 or b"") or None)
                for b in self.container.list_blobs(name_starts_with=prefix)
            }
        except ResourceNotFoundError:
            with contextlib.suppress(ResourceExistsError):  # created meanwhile by someone else
                self.container.create_container()
            return {}

    def _after_first(self, file: LocalFile, result: _Staging | bool | None) -> None:
        if result is None:
            self._summary.skipped += 1
            self._advance(file.size, files=1)
        elif result is True:
            self._summary.uploaded += 1
            self._summary.uploaded_bytes += file.size
            self._advance(file.size, files=1)
        elif isinstance(result, _Staging):
            self._advance(result.reused_bytes, files=0)
            result.pending = len(result.blocks)
            for block_id, offset, length in result.blocks:
                self._schedule(
                    partial(self._stage, result, block_id, offset, length),
                    partial(self._after_block, result),
                )
            if not result.blocks:
                self._schedule(partial(self._commit, result), self._after_commit)

    def _after_block(self, staging: _Staging, nbytes: int) -> None:
        staging.pending -= 1
        self._summary.uploaded_bytes += nbytes
        self._advance(nbytes, files=0)
        if staging.pending == 0:
            self._schedule(partial(self._commit, staging), self._after_commit)

    def _after_commit(self, _: None) -> None:
        self._summary.uploaded += 1
        self._advance(0, files=1)

    def _advance(self, nbytes: int, *, files: int) -> None:
        if self.progress:
            self.progress.advance(nbytes=nbytes, files=files)

    def _first_step(self, file: LocalFile, remote: tuple[int, bytes | None] | None) -> _Staging | bool | None:
        """None: already there. True: sent in one request. A `_Staging`: blocks to send."""
        # The MD5 is needed either way: to compare, or as the new blob's Content-MD5.
        if file.size > self.block_size:
            md5 = file_md5(file.path)
            return None if remote == (file.size, md5) else self._plan_blocks(file, md5)
        data = file.path.read_bytes()  # small: read once, to hash and to send
        md5 = hashlib.md5(data).digest()  # not for security: Content-MD5
        if remote == (file.size, md5):
            return None
        content = ContentSettings(content_md5=bytearray(md5))
        self.container.upload_blob(file.blob, data, overwrite=True, content_settings=content)
        return True

    def _plan_blocks(self, file: LocalFile, md5: bytes) -> _Staging:
        """The file's blocks; those an earlier, interrupted upload already staged are kept, not sent."""
        staging = _Staging(file, md5, block_ids=[])
        try:
            _, uncommitted = self.container.get_blob_client(file.blob).get_block_list("uncommitted")
        except ResourceNotFoundError:
            uncommitted = []
        staged = {b.id: b.size for b in uncommitted}
        for index, offset in enumerate(range(0, file.size, self.block_size)):
            length = min(self.block_size, file.size - offset)
            # Same content, same ids: the MD5 of the whole file names each block.
            block_id = base64.b64encode(f"{md5.hex()}-{index:08d}".encode()).decode()
            staging.block_ids.append(block_id)
            if staged.get(block_id) == length:
                staging.reused_bytes += length
            else:
                staging.blocks.append((block_id, offset, length))
        return staging

    def _stage(self, staging: _Staging, block_id: str, offset: int, length: int) -> int:
        with staging.file.path.open("rb") as source:
            source.seek(offset)
            data = source.read(length)
        self.container.get_blob_client(staging.file.blob).stage_block(block_id, data, length=length)
        return length

    def _commit(self, staging: _Staging) -> None:
        self.container.get_blob_client(staging.file.blob).commit_block_list(
            [BlobBlock(block_id=b) for b in staging.block_ids],
            content_settings=ContentSettings(content_md5=bytearray(staging.md5)),
        )


def upload_folder(
    service: BlobServiceClient,
    folder: Path,
    container: str,
    prefix: str,
    *,
    workers: int = DEFAULT_WORKERS,
    block_size: int = BLOCK_SIZE,
    progress: UploadProgress | None = None,
) -> UploadSummary:
    """Upload `folder` to `container` under `prefix`; see the module docstring."""
    client = service.get_container_client(container)
    return Uploader(client, workers=workers, block_size=block_size, progress=progress).upload(folder, prefix)

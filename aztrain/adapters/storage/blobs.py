"""`DataStore` on Azure Blob Storage (azure-storage-blob)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from aztrain.domain.errors import DataChanged, NotFound
from aztrain.domain.layout import local_path
from aztrain.domain.records import BlobInfo

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient


class BlobDataStore:
    """Manifests, data, logs and outputs as blobs of one storage account."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service

    def create_containers(self, names: tuple[str, ...]) -> None:
        """Create containers if missing (the dev host and tests; `infra/` does it in Azure)."""
        for name in names:
            with contextlib.suppress(ResourceExistsError):
                self._service.create_container(name)

    def read(self, container: str, name: str, *, max_bytes: int | None = None) -> bytes:
        blob = self._service.get_blob_client(container, name)
        try:
            # Read one byte past the limit: enough for the caller to say "too large" without fetching it all.
            length = None if max_bytes is None else max_bytes + 1
            return blob.download_blob(offset=0 if length else None, length=length).readall()
        except ResourceNotFoundError:
            raise NotFound("blob", f"{container}/{name}") from None
        except HttpResponseError as exc:
            if exc.status_code == 416:  # InvalidRange: storage refuses any range of an empty blob
                return b""
            raise

    def read_range(self, container: str, name: str, offset: int, length: int) -> tuple[bytes, int]:
        blob = self._service.get_blob_client(container, name)
        try:
            try:
                stream = blob.download_blob(offset=offset, length=length)
            except HttpResponseError as exc:
                # Storage refuses a range at or past the end (any range of an empty blob): for a log, "nothing yet".
                if exc.status_code != 416:  # InvalidRange
                    raise
                return b"", blob.get_blob_properties().size
            # `size` is the range's; the blob's own is in Content-Range ("bytes 0-3/7").
            content_range = stream.properties.content_range or f"/{stream.size}"
            return stream.readall(), int(content_range.rpartition("/")[2])
        except ResourceNotFoundError:
            raise NotFound("blob", f"{container}/{name}") from None

    def write(self, container: str, name: str, data: bytes) -> None:
        self._service.get_blob_client(container, name).upload_blob(data, overwrite=True)

    def append(self, container: str, name: str, data: bytes) -> None:
        blob = self._service.get_blob_client(container, name)
        try:
            blob.append_block(data)
        except ResourceNotFoundError:
            blob.create_append_blob()
            blob.append_block(data)

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        client = self._service.get_container_client(container)
        try:
            return [
                BlobInfo(name=b.name, size=b.size, etag=b.etag, version_id=b.version_id or "")
                for b in client.list_blobs(name_starts_with=prefix or None)
            ]
        except ResourceNotFoundError:
            return []

    def download(self, container: str, blobs: Sequence[BlobInfo], dest: Path) -> None:
        client = self._service.get_container_client(container)
        for blob in blobs:
            target = local_path(dest, blob.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # The ETag condition makes the download fail rather than read a newer blob than the snapshot.
                stream = client.download_blob(blob.name, etag=blob.etag, match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                raise DataChanged(container, blob.name) from None
            with target.open("wb") as handle:
                stream.readinto(handle)

    def upload_folder(self, folder: Path, container: str, prefix: str) -> int:
        files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
        client = self._service.get_container_client(container)
        for path in files:
            with path.open("rb") as handle:
                client.upload_blob(prefix + path.relative_to(folder).as_posix(), handle, overwrite=True)
        return len(files)

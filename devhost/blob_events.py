"""Azurite uploads as Event Grid `Microsoft.Storage.BlobCreated` events.

Azurite publishes no events, so a watcher lists the subscribed containers and, for each
blob version it has not delivered yet, builds the event Azure Storage would publish and
hands it to the delivery queue once per matching subscription (as Event Grid does). The
local stack lists them once, at start, and raises the events of later writes as they
happen, in its blob front door (`blob_front_door`); a host without one polls.

Blob versions are told apart by ETag for block blobs. Append and page blobs fire
BlobCreated in Azure only when created, not on every append, so for them the creation
time is the version. Known difference: Azure does not publish BlobCreated for a
metadata-only change, which changes the ETag here too; consumers are idempotent anyway.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

if TYPE_CHECKING:
    from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient

log = logging.getLogger(__name__)
#: The Azure SDK logs every request at INFO; polling several times a second would drown the
#: dev host's own lines, so the watcher's client logs here, at WARNING unless raised.
storage_log = logging.getLogger(__name__ + ".storage")
storage_log.setLevel(logging.WARNING)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
#: The resource id Event Grid would give a storage account in a subscription; zeros, since there is none.
TOPIC_TEMPLATE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
    "/providers/Microsoft.Storage/storageAccounts/{account}"
)

Event = dict[str, Any]


def blob_subject(container: str, name: str) -> str:
    """The Event Grid subject of a blob."""
    return f"/blobServices/default/containers/{container}/blobs/{name}"


@dataclass(frozen=True)
class Subscription:
    """An Event Grid subscription on the storage account, delivering to one Event Grid function
    (`function_name`: the webhook, an `AzureFunction` endpoint) or to a storage queue (`queue_name`: a
    `StorageQueue` endpoint, which a queue-triggered function reads).

    Filters are Azure's: `subject_begins_with` is a full subject prefix such as
    `/blobServices/default/containers/jobs/blobs/manifests/` (empty: the whole container);
    `subject_ends_with` is any of several suffixes (empty: no suffix filter). Matching is
    case-insensitive, Azure's default.
    """

    name: str
    function_name: str
    container: str
    subject_begins_with: str = ""
    subject_ends_with: tuple[str, ...] = ()
    queue_name: str = ""

    def __post_init__(self) -> None:
        if bool(self.function_name) == bool(self.queue_name):
            raise ValueError(f"subscription {self.name}: give exactly one endpoint, a function_name or a queue_name")
        own = blob_subject(self.container, "")
        if self.subject_begins_with and not self.subject_begins_with.casefold().startswith(own.casefold()):
            # It would never match: the watcher only reads this subscription's container.
            raise ValueError(
                f"subscription {self.name}: subject_begins_with {self.subject_begins_with!r} must start with {own!r}"
            )
        if isinstance(self.subject_ends_with, str):
            raise TypeError(f"subscription {self.name}: subject_ends_with must be a tuple of suffixes")

    def matches(self, subject: str) -> bool:
        """Whether an event with this subject passes the subscription's filters."""
        folded = subject.casefold()
        begins = self.subject_begins_with or blob_subject(self.container, "")
        if not folded.startswith(begins.casefold()):
            return False
        return not self.subject_ends_with or any(folded.endswith(s.casefold()) for s in self.subject_ends_with)


def blob_created_event(*, account: str, container: str, blob: BlobProperties, url: str, api: str = "PutBlob") -> Event:
    """The `Microsoft.Storage.BlobCreated` event (Event Grid schema) Azure would publish for `blob`.

    `api` names the operation that wrote it (PutBlob, PutBlockList, CopyBlob); a listing cannot tell.

    Everything is derived from the blob, so the same blob version always gives the same
    event: `id` is a UUID5 of URL + ETag, and a restarted host re-delivers with the same id.
    """
    etag = str(blob.etag or "").strip('"')  # as a listing and Azure's events show it: no quotes
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, url + etag))
    modified: datetime = blob.last_modified or datetime.now(UTC)
    return {
        "topic": TOPIC_TEMPLATE.format(account=account),
        "subject": blob_subject(container, blob.name),
        "eventType": BLOB_CREATED,
        "eventTime": modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "id": event_id,
        "data": {
            "api": api,
            "clientRequestId": _derived_uuid(event_id, "client-request"),
            "requestId": _derived_uuid(event_id, "request"),
            "eTag": etag,
            "contentType": blob.content_settings.content_type or "application/octet-stream",
            "contentLength": blob.size,
            "blobType": _blob_type(blob),
            "url": url,
            "sequencer": _sequencer(modified),
            "storageDiagnostics": {"batchId": _derived_uuid(event_id, "batch")},
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


class BlobWatcher:
    """Polls the subscriptions' containers and passes each new blob's event to `deliver`.

    `deliver(subscription, event)` is called from the polling thread (or the caller of
    `poll_once()`) and must not block; the host passes the delivery queue's `submit`.
    Containers that do not exist yet are skipped until they do.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        subscriptions: Sequence[Subscription],
        deliver: Callable[[Subscription, Event], None],
        *,
        poll_interval: float | None = 0.3,
    ) -> None:
        self._service = service
        self._subscriptions = list(subscriptions)
        self._deliver = deliver
        self._poll_interval = poll_interval
        self._containers = sorted({s.container for s in self._subscriptions})
        self._seen: dict[str, dict[str, str]] = {}  # container -> blob name -> version delivered
        self._lock = threading.Lock()  # one poll at a time: the background loop or poll_once()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: set[str] = set()

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        subscriptions: Sequence[Subscription],
        deliver: Callable[[Subscription, Event], None],
        *,
        poll_interval: float | None = 0.3,
    ) -> BlobWatcher:
        # No SDK retries and a short connect timeout: the next poll is the retry, and stop() stays prompt.
        from azure.storage.blob import BlobServiceClient  # lazy: ~0.3 s, and indexing an app imports this package

        client = BlobServiceClient.from_connection_string(
            connection_string, logger=storage_log, retry_total=0, connection_timeout=5
        )
        return cls(
            client,
            subscriptions,
            deliver,
            poll_interval=poll_interval,
        )

    def start(self) -> None:
        """Poll in a background thread, first at once (blobs already there are delivered too).

        With `poll_interval=None` that first sweep is the only one: something else (the front
        door) raises the events of later writes.
        """
        if self._thread is not None or not self._containers:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="devhost-blob-watcher", daemon=True)
        self._thread.start()
        every = f"every {self._poll_interval:.1f} s" if self._poll_interval is not None else "once, at start"
        log.info("listing containers %s %s", ", ".join(self._containers), every)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling (waits for a poll in progress, up to `timeout` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def poll_once(self) -> int:
        """List every watched container once, deliver what is new; returns the number of events handed over."""
        with self._lock:
            return sum(self._poll_container(container) for container in self._containers)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # never let one bad poll end the watcher
                log.exception("blob watcher poll failed")
            if self._poll_interval is None:
                return
            self._stop.wait(self._poll_interval)

    def _poll_container(self, container: str) -> int:
        client = self._service.get_container_client(container)
        seen = self._seen.setdefault(container, {})
        listed: set[str] = set()
        handed_over = 0
        try:
            for blob in client.list_blobs():
                listed.add(blob.name)
                version = _version(blob)
                if seen.get(blob.name) == version:
                    continue
                handed_over += self._publish(client, container, blob)
                seen[blob.name] = version  # recorded per blob, so a listing cut short is not re-delivered
        except ResourceNotFoundError:
            seen.clear()  # the container does not exist (yet)
            return handed_over
        except (AzureError, OSError) as exc:
            if container not in self._failing:  # once per outage, not every 0.3 s
                log.warning("cannot list container %s: %s", container, exc)
                self._failing.add(container)
            return handed_over
        self._failing.discard(container)
        for gone in set(seen) - listed:  # deleted blobs: a later blob of that name is new again
            del seen[gone]
        return handed_over

    def _publish(self, client: ContainerClient, container: str, blob: BlobProperties) -> int:
        subject = blob_subject(container, blob.name)
        matching = [s for s in self._subscriptions if s.container == container and s.matches(subject)]
        if not matching:
            return 0
        event = blob_created_event(
            account=client.account_name or "devstoreaccount1",
            container=container,
            blob=blob,
            url=client.get_blob_client(blob.name).url,
        )
        for subscription in matching:
            self._deliver(subscription, event)
        return len(matching)


def _version(blob: BlobProperties) -> str:
    if _blob_type(blob) == "BlockBlob":
        return str(blob.etag)
    created = blob.creation_time
    return created.isoformat() if created else str(blob.etag)


def _blob_type(blob: BlobProperties) -> str:
    kind: Any = blob.blob_type
    return str(getattr(kind, "value", kind) or "BlockBlob")


def _sequencer(modified: datetime) -> str:
    # Azure's is 32 hex digits that order the events of one blob name. Azurite ETags are
    # random, so the last-modified time (100 ns ticks; whole seconds from a listing) stands in.
    return f"{int(modified.timestamp() * 10_000_000):032x}"


def _derived_uuid(event_id: str, role: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{event_id}/{role}"))

"""The blob front door on Azurite: each acknowledged write raises its BlobCreated event, with the real `api`.

Clients use the door's port as their blob endpoint; nothing is listed to find new blobs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devhost import Subscription
from devhost.blob_events import BlobWatcher, blob_subject
from devhost.blob_front_door import BlobFrontDoor

Delivered = list[tuple[Subscription, dict[str, Any]]]


@pytest.fixture
def delivered() -> Delivered:
    return []


@pytest.fixture
def through_door(azurite: str, delivered: Delivered) -> Iterator[BlobServiceClient]:
    """A blob client whose endpoint is a front door watching `watched/incoming/` (and nothing of `other`)."""
    behind = BlobServiceClient.from_connection_string(azurite)
    for name in ("watched", "other"):
        if not behind.get_container_client(name).exists():
            behind.create_container(name)
    subscription = Subscription("in", "on_blob", "watched", subject_begins_with=blob_subject("watched", "incoming/"))
    door = BlobFrontDoor(behind, [subscription], lambda s, e: delivered.append((s, e)))
    door.start()
    try:
        public = re.sub(r"(BlobEndpoint=http://[^:]+:)\d+", rf"\g<1>{door.port}", azurite)
        yield BlobServiceClient.from_connection_string(public, max_single_put_size=4 * 1024, max_block_size=4 * 1024)
    finally:
        door.stop()


def apis(delivered: Delivered) -> list[tuple[str, str, int, str]]:
    return [
        (e["subject"].rsplit("/", 1)[1], e["data"]["api"], e["data"]["contentLength"], e["data"]["blobType"])
        for _, e in delivered
    ]


def test_each_write_that_azure_publishes_raises_one_event_with_its_api(through_door, delivered):
    watched = through_door.get_container_client("watched")
    small = watched.upload_blob("incoming/small.csv", b"a,b\n1,2\n", overwrite=True)
    watched.upload_blob("incoming/large.bin", b"x" * 10_000, overwrite=True)  # blocks, then a block list
    copy = watched.get_blob_client("incoming/copy.csv")
    copy.start_copy_from_url(watched.get_blob_client("incoming/small.csv").url)
    log = watched.get_blob_client("incoming/log.txt")
    log.create_append_blob()
    log.append_block(b"appends raise nothing")
    watched.upload_blob("elsewhere/x.csv", b"1", overwrite=True)  # outside the subscription's prefix
    through_door.get_container_client("other").upload_blob("incoming/y.csv", b"1", overwrite=True)

    assert apis(delivered) == [
        ("small.csv", "PutBlob", 8, "BlockBlob"),
        ("large.bin", "PutBlockList", 10_000, "BlockBlob"),
        ("copy.csv", "CopyBlob", 8, "BlockBlob"),
        ("log.txt", "PutBlob", 0, "AppendBlob"),
    ]
    first = delivered[0][1]
    assert first["eventType"] == "Microsoft.Storage.BlobCreated"
    assert first["data"]["eTag"] == small.get_blob_properties().etag.strip('"')
    assert watched.download_blob("incoming/large.bin").readall() == b"x" * 10_000  # reads are relayed too


def test_the_door_and_the_start_up_sweep_give_a_blob_version_the_same_event_id(azurite, through_door, delivered):
    through_door.get_container_client("watched").upload_blob("incoming/same.csv", b"1", overwrite=True)
    swept: Delivered = []
    subscription = delivered[-1][0]
    BlobWatcher.from_connection_string(azurite, [subscription], lambda s, e: swept.append((s, e))).poll_once()
    (again,) = [e for _, e in swept if e["subject"].endswith("/same.csv")]
    assert again["id"] == delivered[-1][1]["id"]

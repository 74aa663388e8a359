"""Queue triggers served from Azurite's queue service, as the Functions host's queue extension serves them.

The settings are the app's own `host.json` `extensions.queues` (`QueueSettings.from_host_json`), read
the way the extension reads them (Azure/azure-sdk-for-net, `Microsoft.Azure.WebJobs.Extensions.Storage.Queues`:
`QueuesOptions` and `QueueProcessor`):

* each queue function's poller fetches up to `batchSize` messages at a time and keeps fetching while
  no more than `newBatchThreshold` are in flight, so at most `batchSize + newBatchThreshold` run at once;
* a message is held invisible while its function runs; on success it is deleted; on failure it is
  made visible again after `visibilityTimeout`, unless its dequeue count has reached
  `maxDequeueCount`: then it is copied to `<queue>-poison` (created on first use) and deleted;
* the body reaches the function base64-decoded (`messageEncoding: base64`, the default); a body that is
  not base64 fails like a function that raised, so it ends in the poison queue too;
* an empty queue is polled again after a delay that doubles up to `maxPollingInterval`; `nudge()` (the
  dev host's own write to the queue) polls at once, where Azure's host would find it at its next poll.

A message taken by a host that dies before it deletes it reappears once its lease (`lease`, seconds)
lapses, and is delivered again with its dequeue count raised: at-least-once, as in Azure.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.functions.queue import QueueMessage

from devhost.functions_index import QueueFunction
from devhost.invoke import Invoker

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueServiceClient
    from azure.storage.queue import QueueMessage as StoredMessage

log = logging.getLogger(__name__)
#: The SDK logs every request at INFO; a poller asks several times a second.
storage_log = logging.getLogger(__name__ + ".storage")
storage_log.setLevel(logging.WARNING)

POISON_SUFFIX = "-poison"
#: The first delay after an empty poll; it doubles up to `maxPollingInterval`.
FIRST_POLL_DELAY = 0.1
_DURATION = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")


def parse_duration(value: str | float | int) -> float:
    """Seconds in a host.json duration, `hh:mm:ss[.fff]` or `d.hh:mm:ss` (a bare number: milliseconds)."""
    if isinstance(value, int | float):
        return float(value) / 1000
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"not a host.json duration (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueSettings:
    """host.json `extensions.queues`, with the extension's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8  # the extension's default is batchSize / 2 (per core on the older versions)
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0

    @classmethod
    def from_host_json(cls, path: Path) -> QueueSettings:
        """The settings a host.json file declares (the defaults where it is silent)."""
        queues: dict[str, Any] = json.loads(path.read_text()).get("extensions", {}).get("queues", {})
        batch = int(queues.get("batchSize", cls.batch_size))
        return cls(
            batch_size=batch,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch // 2)),
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
            visibility_timeout=parse_duration(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=parse_duration(queues.get("maxPollingInterval", "00:01:00")),
        )

    @property
    def concurrency(self) -> int:
        """The most messages of one function in flight at once."""
        return self.batch_size + self.new_batch_threshold


class QueueTriggers:
    """Polls each queue function's queue and invokes the function on its messages (see the module docstring)."""

    def __init__(
        self,
        functions: Sequence[QueueFunction],
        invoker: Invoker,
        service: QueueServiceClient,
        *,
        settings: QueueSettings,
        lease: float = 30.0,
    ) -> None:
        self._functions = list(functions)
        self._invoker = invoker
        self._service = service
        self.settings = settings
        self._lease = lease
        self._stop = threading.Event()
        self._wake = {f.queue_name: threading.Event() for f in self._functions}
        self._in_flight = dict.fromkeys(self._wake, 0)
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._pools: list[ThreadPoolExecutor] = []

    @classmethod
    def from_connection_string(
        cls,
        functions: Sequence[QueueFunction],
        invoker: Invoker,
        connection_string: str,
        *,
        settings: QueueSettings,
        lease: float = 30.0,
    ) -> QueueTriggers:
        from azure.storage.queue import QueueServiceClient  # lazy: indexing an app imports this package

        service = QueueServiceClient.from_connection_string(
            connection_string, logger=storage_log, retry_total=1, connection_timeout=5
        )
        return cls(functions, invoker, service, settings=settings, lease=lease)

    @property
    def queues(self) -> list[str]:
        """The queues served."""
        return list(self._wake)

    def start(self) -> None:
        """Create the served queues if missing and start one poller (and its pool of workers) per function."""
        if self._threads:
            return
        self._stop.clear()
        for function in self._functions:
            _create(self._service.get_queue_client(function.queue_name))
            pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix=f"devhost-queue-{function.name}")
            thread = threading.Thread(
                target=self._poll, args=(function, pool), name=f"devhost-queue-poller-{function.name}", daemon=True
            )
            self._pools.append(pool)
            self._threads.append(thread)
            thread.start()
            log.info("queue trigger %s serves queue %s", function.name, function.queue_name)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; invocations in progress finish (their messages are deleted or released as usual)."""
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._threads, self._pools = [], []

    def nudge(self, queue_name: str) -> None:
        """A message was just written to `queue_name`: poll it now instead of after the back-off."""
        wake = self._wake.get(queue_name)
        if wake is not None:
            wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every served queue is empty and nothing is in flight; False if `timeout` passed first.

        A message waiting out its `visibilityTimeout` before a retry still counts: it is not settled.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._changed:
                busy = any(self._in_flight.values())
            if not busy and all(self._empty(q) for q in self._wake):
                with self._changed:  # nothing was taken between the two looks
                    if not any(self._in_flight.values()):
                        return True
            time.sleep(0.05)
        return False

    def _empty(self, queue_name: str) -> bool:
        properties = self._service.get_queue_client(queue_name).get_queue_properties()
        return not properties.approximate_message_count

    def _poll(self, function: QueueFunction, pool: ThreadPoolExecutor) -> None:
        queue = self._service.get_queue_client(function.queue_name)
        wake, delay = self._wake[function.queue_name], FIRST_POLL_DELAY
        while not self._stop.is_set():
            with self._changed:  # a new batch only while no more than newBatchThreshold are in flight
                self._changed.wait_for(
                    lambda: (
                        self._stop.is_set() or self._in_flight[function.queue_name] <= self.settings.new_batch_threshold
                    )
                )
            if self._stop.is_set():
                return
            try:
                batch = list(
                    queue.receive_messages(
                        messages_per_page=self.settings.batch_size,
                        max_messages=self.settings.batch_size,
                        visibility_timeout=max(1, round(self._lease)),
                    )
                )
            except Exception as exc:  # Azurite away: the next poll is the retry
                log.warning("cannot read queue %s: %s", function.queue_name, exc)
                batch = []
            if batch:
                delay = FIRST_POLL_DELAY
                for message in batch:
                    with self._changed:
                        self._in_flight[function.queue_name] += 1
                    pool.submit(self._process, function, queue, message)
                continue
            wake.wait(delay)
            delay = FIRST_POLL_DELAY if wake.is_set() else min(delay * 2, self.settings.max_polling_interval)
            wake.clear()

    def _process(self, function: QueueFunction, queue: QueueClient, message: StoredMessage) -> None:
        try:
            ok = self._invoke(function, message)
            self._settle(queue, message, ok)
        except Exception:  # a delete or release that failed: the lease lapses and the message comes back
            log.exception("queue %s: message %s not settled", function.queue_name, message.id)
        finally:
            with self._changed:
                self._in_flight[function.queue_name] -= 1
                self._changed.notify_all()

    def _invoke(self, function: QueueFunction, message: StoredMessage) -> bool:
        started = time.monotonic()
        try:
            body = base64.b64decode(str(message.content), validate=True)
        except (binascii.Error, ValueError):
            log.error("queue %s: message %s is not base64; the trigger cannot bind it", function.queue_name, message.id)
            return False
        trigger_value = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            self._invoker.call(function, trigger_value)
        except Exception:
            log.exception(
                "function %s failed on message %s (attempt %s of %d)",
                function.name,
                message.id,
                message.dequeue_count,
                self.settings.max_dequeue_count,
            )
            return False
        log.info("message %s -> %s: ok in %.0f ms", message.id, function.name, (time.monotonic() - started) * 1000)
        return True

    def _settle(self, queue: QueueClient, message: StoredMessage, ok: bool) -> None:
        if ok:
            queue.delete_message(message.id, message.pop_receipt)
        elif (message.dequeue_count or 0) >= self.settings.max_dequeue_count:
            poison = self._service.get_queue_client(queue.queue_name + POISON_SUFFIX)
            _create(poison)
            poison.send_message(message.content, time_to_live=-1)
            queue.delete_message(message.id, message.pop_receipt)
            log.warning(
                "message %s moved to %s after %s attempts", message.id, poison.queue_name, message.dequeue_count
            )
            self.nudge(poison.queue_name)
        else:
            queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=round(self.settings.visibility_timeout)
            )


def _create(queue: QueueClient) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()

"""Event Grid's push delivery: POST each event to the Functions webhook until it is acknowledged.

At-least-once, as in Azure: one event per request (a JSON array of one), a 2xx
acknowledges, anything else or no answer within `timeout` is retried with exponential
backoff (short, for a dev loop: `first_backoff` doubling up to `max_backoff`) until
`max_attempts`; 400, 401 and 413 are not retried, as Event Grid does not retry them.
Retries wait in a due-time queue served by a few workers, so one failing event never
holds up the others. Order is not guaranteed, as in Azure.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from devhost.blob_events import Event, Subscription

log = logging.getLogger(__name__)

NOT_RETRIED = frozenset({400, 401, 413})


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    subscription: Subscription = field(compare=False)
    event: Event = field(compare=False)
    attempts: int = field(default=0, compare=False)


class WebhookSender:
    """A retrying delivery queue to `<base_url>/runtime/webhooks/EventGrid?functionName=<fn>`."""

    def __init__(
        self,
        base_url: str,
        *,
        workers: int = 4,
        first_backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_attempts: int = 30,
        timeout: float = 30.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._workers = workers
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._queue: list[_Delivery] = []
        self._in_flight = 0
        self._seq = itertools.count()
        self._changed = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the delivery workers."""
        if self._threads:
            return
        self._stopping = False
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"devhost-delivery-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers after their current attempt; queued deliveries are dropped (and logged).

        Nothing is lost for good: the blob watcher re-delivers every blob it finds at its next start.
        """
        with self._changed:
            self._stopping = True
            dropped = len(self._queue)
            self._queue.clear()
            self._changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = []
        if dropped:
            log.info("dropped %d undelivered event(s) at shutdown", dropped)

    def submit(self, subscription: Subscription, event: Event) -> None:
        """Queue `event` for delivery to `subscription`'s function now. Never blocks."""
        self._push(_Delivery(time.monotonic(), next(self._seq), subscription, event))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued, retrying or in flight; False if `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._queue and self._in_flight == 0, timeout=timeout)

    def _push(self, delivery: _Delivery) -> None:
        with self._changed:
            if self._stopping:
                return
            heapq.heappush(self._queue, delivery)
            self._changed.notify_all()

    def _work(self) -> None:
        while True:
            with self._changed:
                delivery = self._next_due()
                if delivery is None:
                    return
                self._in_flight += 1
            try:
                self._attempt(delivery)
            except Exception:  # a bug here must not kill the worker or leak the in-flight count
                log.exception("delivery of event %s failed unexpectedly", delivery.event.get("id"))
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

    def _next_due(self) -> _Delivery | None:
        # Called with the condition held; returns None once stopping.
        while not self._stopping:
            now = time.monotonic()
            if self._queue and self._queue[0].due <= now:
                return heapq.heappop(self._queue)
            self._changed.wait(timeout=self._queue[0].due - now if self._queue else None)
        return None

    def _attempt(self, delivery: _Delivery) -> None:
        event, subscription = delivery.event, delivery.subscription
        status, detail = self._post(subscription, event, delivery_count=delivery.attempts)
        delivery.attempts += 1
        if status is not None and 200 <= status < 300:
            log.debug(
                "delivered event %s to %s (attempt %d)", event.get("id"), subscription.function_name, delivery.attempts
            )
            return
        outcome = f"HTTP {status} {detail}".strip() if status is not None else detail
        if status in NOT_RETRIED or delivery.attempts >= self._max_attempts:
            log.error(
                "giving up on event %s (%s) for %s after %d attempt(s): %s",
                event.get("id"),
                event.get("subject"),
                subscription.name,
                delivery.attempts,
                outcome,
            )
            return
        backoff = min(self._max_backoff, self._first_backoff * 2 ** (delivery.attempts - 1))
        log.warning(
            "event %s for %s: %s; retry %d in %.1f s",
            event.get("id"),
            subscription.function_name,
            outcome,
            delivery.attempts,
            backoff,
        )
        delivery.due = time.monotonic() + backoff
        self._push(delivery)

    def _post(self, subscription: Subscription, event: Event, *, delivery_count: int) -> tuple[int | None, str]:
        query = urlencode({"functionName": subscription.function_name})
        request = urllib.request.Request(
            f"{self._base_url}/runtime/webhooks/EventGrid?{query}",
            data=json.dumps([event]).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "aeg-event-type": "Notification",
                "aeg-subscription-name": subscription.name.upper(),
                "aeg-delivery-count": str(delivery_count),
                "aeg-data-version": str(event.get("dataVersion", "")),
                "aeg-metadata-version": str(event.get("metadataVersion", "1")),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                status: int = response.status
                return status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, _read_error(exc)
        except (urllib.error.URLError, OSError) as exc:
            return None, f"no response ({exc})"


def _read_error(exc: urllib.error.HTTPError) -> str:
    try:
        body: Any = exc.read()
    except OSError:
        return ""
    return bytes(body)[:300].decode("utf-8", "replace")

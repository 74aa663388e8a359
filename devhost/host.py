"""`DevHost`: runs a `FunctionApp` locally the way the Functions host and Event Grid would."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType, TracebackType

import azure.functions as func

from devhost.blob_events import BlobWatcher, Event, Subscription, storage_log
from devhost.blob_front_door import BlobFrontDoor
from devhost.delivery import WebhookSender
from devhost.functions_index import FunctionIndex
from devhost.http_triggers import HttpTriggers
from devhost.invoke import Invoker
from devhost.queue_delivery import QueueSender
from devhost.queue_triggers import QueueSettings, QueueTriggers
from devhost.server import DevServer, Dispatcher, SignIn
from devhost.timers import TimerRunner
from devhost.webhook import EventGridWebhook

log = logging.getLogger(__name__)


class DevHost:
    """A local Functions host for `app`.

    * HTTP triggers under `/<route_prefix>/<route>` (auth levels are not enforced locally), each signed in
      by `sign_in` (which plays App Service Authentication: it injects `X-MS-CLIENT-PRINCIPAL`);
    * the Event Grid webhook `POST /runtime/webhooks/EventGrid?functionName=<fn>`;
    * timer triggers every `timer_interval` seconds instead of their schedule (None: only
      when `run_timers_once()` is called);
    * queue triggers on Azurite's queue service, with the `queue_settings` of the app's host.json
      (`queue_triggers`);
    * `BlobCreated` events for uploads to the `subscriptions`' containers, POSTed to the
      webhook with Event Grid's retries, or written to the subscription's queue as Event Grid
      writes to a `StorageQueue` endpoint. With `blob_front_door_port`, clients upload through
      a front door on that port, which raises each event as the write is acknowledged, and the
      containers are listed once, at start, for what was written while the host was down;
      without it, they are listed every `blob_poll_interval` seconds.

    The app is indexed here, once (`app.get_functions()` may be called only once per app).
    Use as a context manager, or `start()` / `stop()`.
    """

    def __init__(
        self,
        app: func.FunctionRegister,
        *,
        connection_string: str,
        subscriptions: Sequence[Subscription] = (),
        host: str = "127.0.0.1",
        port: int = 7071,
        timer_interval: float | None = 2.0,
        blob_poll_interval: float = 0.3,
        blob_front_door_port: int | None = None,
        route_prefix: str = "api",
        sign_in: SignIn | None = None,
        queue_settings: QueueSettings | None = None,
        queue_lease: float = 30.0,
    ) -> None:
        self.index = FunctionIndex.from_app(app)
        self.subscriptions = list(subscriptions)
        served = {function.queue_name for function in self.index.queues}
        for subscription in self.subscriptions:
            if subscription.queue_name and subscription.queue_name not in served:
                raise ValueError(
                    f"subscription {subscription.name} writes to queue {subscription.queue_name!r}, which no queue "
                    f"function of the app reads (those read: {', '.join(sorted(served)) or 'none'})"
                )
            if subscription.function_name and subscription.function_name not in self.index.event_grid:
                raise ValueError(
                    f"subscription {subscription.name} targets {subscription.function_name!r}, which is not an "
                    f"Event Grid function of the app (those are: {', '.join(sorted(self.index.event_grid)) or 'none'})"
                )
        self._connection_string = connection_string
        self._blob_poll_interval = blob_poll_interval
        self._blob_front_door_port = blob_front_door_port
        self._route_prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self._invoker = Invoker()
        dispatcher = Dispatcher(
            HttpTriggers(self.index, self._invoker),
            EventGridWebhook(self.index.event_grid, self._invoker),
            route_prefix=route_prefix,
            sign_in=sign_in,
        )
        self._server = DevServer(dispatcher, host=host, port=port)
        self._timers = TimerRunner(self.index.timers, self._invoker, interval=timer_interval)
        self._queue_settings = queue_settings or QueueSettings()
        self._queue_lease = queue_lease
        self._queues: QueueTriggers | None = None
        self._queue_sender: QueueSender | None = None
        self._sender: WebhookSender | None = None
        self._watcher: BlobWatcher | None = None
        self._front_door: BlobFrontDoor | None = None
        self._stop_requested = threading.Event()
        self._lifecycle = threading.RLock()  # start() undoes itself through stop() on failure
        self._started = False

    @property
    def url(self) -> str:
        """Base URL of the host, e.g. http://127.0.0.1:7071 (the real port once started with port 0)."""
        return self._server.url

    def start(self) -> None:
        """Serve HTTP, start the timers and the blob watcher. Everything started is stopped if a step fails."""
        with self._lifecycle:
            if self._started:
                return
            self._started = True
            self._stop_requested.clear()
            try:
                self._server.start()
                if self.index.queues:
                    self._queues = QueueTriggers.from_connection_string(
                        self.index.queues,
                        self._invoker,
                        self._connection_string,
                        settings=self._queue_settings,
                        lease=self._queue_lease,
                    )
                    self._queues.start()
                if self.subscriptions:
                    self._sender = WebhookSender(self.url)
                    self._sender.start()
                    self._queue_sender = QueueSender.from_connection_string(
                        self._connection_string, written=self._queues.nudge if self._queues else lambda _: None
                    )
                    if self._blob_front_door_port is not None:
                        from azure.storage.blob import BlobServiceClient  # lazy: see blob_events.from_connection_string

                        self._front_door = BlobFrontDoor(
                            BlobServiceClient.from_connection_string(self._connection_string, logger=storage_log),
                            self.subscriptions,
                            self._deliver,
                            port=self._blob_front_door_port,
                        )
                        self._front_door.start()
                    self._watcher = BlobWatcher.from_connection_string(
                        self._connection_string,
                        self.subscriptions,
                        self._deliver,
                        poll_interval=None if self._front_door else self._blob_poll_interval,
                    )
                    self._watcher.start()
                self._timers.start()  # last: the reconciler may write blobs through the front door
            except BaseException:
                self.stop()
                raise
        self._log_functions()
        log.info(
            "dev host on %s: %d HTTP, %d Event Grid, %d queue, %d timer function(s); %d subscription(s)",
            self.url,
            len(self.index.http),
            len(self.index.event_grid),
            len(self.index.queues),
            len(self.index.timers),
            len(self.subscriptions),
        )

    def stop(self) -> None:
        """Stop everything, event sources first so nothing new arrives while the server goes down."""
        self._stop_requested.set()  # first, so serve_forever() wakes even while another thread stops
        with self._lifecycle:
            if not self._started:
                return
            self._started = False
            if self._front_door is not None:
                self._front_door.stop()
                self._front_door = None
            if self._watcher is not None:
                self._watcher.stop()
                self._watcher = None
            if self._sender is not None:
                self._sender.stop()
                self._sender = None
            self._queue_sender = None
            self._timers.stop()
            if self._queues is not None:
                self._queues.stop()
                self._queues = None
            self._server.stop()
            self._invoker.close()
        log.info("dev host stopped")

    def serve_forever(self) -> None:
        """Start if needed, block until Ctrl-C, SIGTERM or `stop()` from another thread, then stop everything."""
        self.start()
        in_main_thread = threading.current_thread() is threading.main_thread()
        # Signal handlers can only be installed from the main thread; elsewhere stop() ends the wait.
        previous = (
            {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main_thread
            else {}
        )
        try:
            self._stop_requested.wait()
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
            self.stop()

    def run_timers_once(self) -> dict[str, BaseException | None]:
        """Run every timer function now; returns each one's exception, or None."""
        return self._timers.run_once()

    def drain(self, timeout: float = 10.0) -> None:
        """Poll the watched containers now and wait until every resulting delivery is settled.

        Settled means acknowledged or given up on (for a queue: every served queue empty, nothing in
        flight); retries are waited for. Raises TimeoutError after `timeout` seconds. Meant for
        tests and scripts that upload a blob and then need its event handled.
        """
        deadline = time.monotonic() + timeout
        if self._watcher is not None and self._sender is not None:
            self._watcher.poll_once()
            if not self._sender.wait_idle(timeout):
                raise TimeoutError(f"event deliveries still pending after {timeout:.0f} s")
        if self._queues is not None and not self._queues.wait_idle(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"queue messages still pending after {timeout:.0f} s")

    def __enter__(self) -> DevHost:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _log_functions(self) -> None:
        # The same overview Core Tools prints at start: what is reachable, and how.
        for function in self.index.http:
            methods = ",".join(sorted(function.methods)) if function.methods else "ANY"
            log.info(
                "  %s: [%s] %s%s/%s", function.name, methods, self.url, self._route_prefix, function.route.template
            )
        for name in self.index.event_grid:
            targets = [s.name for s in self.subscriptions if s.function_name == name]
            log.info("  %s: eventGridTrigger (subscriptions: %s)", name, ", ".join(targets) or "none")
        for queue in self.index.queues:
            targets = [s.name for s in self.subscriptions if s.queue_name == queue.queue_name]
            log.info(
                "  %s: queueTrigger on %s (subscriptions: %s)",
                queue.name,
                queue.queue_name,
                ", ".join(targets) or "none",
            )

    def _deliver(self, subscription: Subscription, event: Event) -> None:
        """Hand `event` to its subscription's endpoint: a queue write, or a webhook delivery."""
        if subscription.queue_name:
            assert self._queue_sender is not None
            self._queue_sender.submit(subscription, event)
        else:
            assert self._sender is not None
            self._sender.submit(subscription, event)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self._stop_requested.set()

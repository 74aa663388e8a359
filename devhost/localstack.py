"""The local stack: Azurite + storage set-up + the dev host serving `function_app`.

What `aztrain dev`, `aztrain demo` and the end-to-end tests run. Event Grid
subscriptions here mirror the ones `infra/` creates in Azure. Unlike the host
modules, this one is aztrain's: it reads the core's settings and prepares its storage.

Stopping (Ctrl-C, SIGTERM or leaving the `with` block) ends everything the stack
started: the dev host first, so nothing new is submitted, then every process of the
local backend's jobs (supervisors, `horovodrun`, ranks and their children), then
Azurite. Runs do not outlive the stack: the local cluster is this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import psutil

from aztrain.adapters.compute.local.backend import stack_processes
from aztrain.adapters.storage.blobs import BlobDataStore
from aztrain.service.bootstrap import build_data_store, ensure_storage
from aztrain.service.settings import (
    AZURITE_CONNECTION_STRING,
    LOCAL_EVENTS_TOPIC_KEY,
    PROJECT_ROOT,
    Settings,
    load_local_settings,
)
from devhost.azurite import Azurite, azurite_connection_string
from devhost.blob_events import Subscription
from devhost.host import DevHost
from devhost.identity import USERS_ENV, LocalUsers
from devhost.queue_triggers import QueueSettings
from devhost.topic import LocalTopic, load_subscribers

log = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
#: How long job processes get to end after SIGTERM before SIGKILL; the supervisor bounds its own
#: shutdown below this (`local_job`), so it is only the backstop. With the host and Azurite, the
#: whole stop stays within the 10 s a user waits.
JOB_STOP_GRACE_SECONDS = 6.0
AZURITE_STOP_GRACE_SECONDS = 2.0
KILL_WAIT_SECONDS = 2.0

_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def subscriptions(settings: Settings) -> list[Subscription]:
    """Event Grid subscriptions as deployed: manifests in the jobs container, and every data container,
    each writing to the blob-events queue (a `StorageQueue` endpoint, infra/events.bicep)."""
    from functions.blob_queue import BLOB_EVENTS_QUEUE  # the queue its trigger reads

    blobs = "/blobServices/default/containers/{}/blobs/"
    manifests = Subscription(
        name="manifests",
        function_name="",
        queue_name=BLOB_EVENTS_QUEUE,
        container=settings.jobs_container,
        subject_begins_with=blobs.format(settings.jobs_container) + settings.manifests_prefix,
        subject_ends_with=MANIFEST_SUFFIXES,
    )
    data = [
        Subscription(
            name=f"data-{container}",
            function_name="",
            queue_name=BLOB_EVENTS_QUEUE,
            container=container,
            subject_begins_with=blobs.format(container),
        )
        for container in settings.data_containers
    ]
    return [manifests, *data]


class LocalStack:
    """Start with `with LocalStack(...) as stack:`; everything started is stopped on exit.

    While it runs (in the main thread), SIGTERM interrupts like Ctrl-C, so both end in the
    same clean stop; signals during the stop are ignored so it is never cut short.
    """

    def __init__(
        self, *, state_dir: Path, port: int, azurite_port: int, timer_interval: float, topic_port: int = 0
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.port = port
        self.topic_port = topic_port  # the local Event Grid topic's (0: a free one)
        self.topic: LocalTopic | None = None
        self.azurite_port = azurite_port
        self.timer_interval = timer_interval
        self._azurite: Azurite | None = None
        self._host: DevHost | None = None
        self._local_state: Path | None = None  # the local backend's state dir: where its job folders are
        self._previous_handlers: dict[signal.Signals, _SignalHandler] = {}
        self._stopping = False
        self.data: BlobDataStore

    @property
    def url(self) -> str:
        assert self._host is not None, "the stack is not started"
        return self._host.url

    def __enter__(self) -> LocalStack:
        self._handle_signals(_interrupt)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve until Ctrl-C or SIGTERM (the host's own handlers end the wait); the caller then stops the stack."""
        assert self._host is not None
        self._host.serve_forever()

    def stop(self) -> None:
        """End everything the stack started, in order, and say what was ended."""
        if self._stopping:
            return
        self._stopping = True
        self._handle_signals(_ignore)
        ended: list[str] = []
        left: list[psutil.Process] = []
        try:
            if self._host is not None:
                self._host.stop()
                ended.append("the dev host")
            if self.topic is not None:
                self.topic.close()
                ended.append("the events topic")
            if self._local_state is not None:
                count, left = self._end_jobs(self._local_state)
                ended.append(f"{count} job process(es)")
            if self._azurite is not None and self._azurite.pid is not None:  # a reused Azurite is not ours
                self._azurite.stop()
                ended.append("Azurite")
        finally:
            self._restore_signals()
        outcome = f"still running: pid {', '.join(str(p.pid) for p in left)}" if left else "nothing left running"
        print(f"local stack stopped ({', '.join(ended) or 'nothing was started'}); {outcome}", flush=True)

    def _start(self) -> None:
        load_local_settings(PROJECT_ROOT / "local.settings.json")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Clients reach blobs through the dev host's front door on the blob port, which raises
        # BlobCreated at each write; Azurite's own blob service listens on a free port behind it.
        connection_string, behind = (
            azurite_connection_string(
                AZURITE_CONNECTION_STRING,
                blob_port=blob_port,
                queue_port=self.azurite_port + 1,
                table_port=self.azurite_port + 2,
            )
            for blob_port in (self.azurite_port, _free_port())
        )
        self._azurite = Azurite(
            connection_string=behind,
            location=self.state_dir / "azurite",
            project_root=PROJECT_ROOT,
            stop_grace=AZURITE_STOP_GRACE_SECONDS,
        )
        self._azurite.start()
        # The Functions code reads settings from the environment, as it does in Azure.
        os.environ["AZTRAIN_STORAGE_CONNECTION_STRING"] = connection_string
        os.environ.setdefault("AZTRAIN_LOCAL_STATE_DIR", str(self.state_dir / "local"))
        self._start_topic()
        settings = Settings.from_env()
        self._local_state = settings.local_state_dir
        ensure_storage(dataclasses.replace(settings, storage_connection_string=behind))  # the door is not open yet
        self.data = build_data_store(settings)

        from function_app import app  # imported only now, with settings in place

        self._host = DevHost(
            app,
            connection_string=behind,
            subscriptions=subscriptions(settings),
            port=self.port,
            timer_interval=self.timer_interval,
            blob_front_door_port=self.azurite_port,
            sign_in=self._users().signed_in,
            queue_settings=QueueSettings.from_host_json(PROJECT_ROOT / "host.json"),
        )
        self._host.start()

    def _users(self) -> LocalUsers:
        """Who the dev host signs callers in as: the users file at `AZTRAIN_DEV_USERS`, else `<state dir>/users.toml`.

        Without either, every caller is the local admin (devhost/identity.py).
        """
        named = os.environ.get(USERS_ENV)
        path = Path(named) if named else self.state_dir / "users.toml"
        if named or path.is_file():
            return LocalUsers.load(path)
        return LocalUsers()

    def _start_topic(self) -> None:
        """The local Event Grid topic for outbound events (unless a topic in Azure is configured).

        It pushes to the webhooks listed in `AZTRAIN_EVENTS_SUBSCRIBERS` (default `<state dir>/subscribers.json`).
        """
        if os.environ.get("AZTRAIN_EVENTS_TOPIC_ENDPOINT", "").startswith("https://"):
            return
        config = os.environ.get("AZTRAIN_EVENTS_SUBSCRIBERS") or self.state_dir / "subscribers.json"
        subscribers = load_subscribers(Path(config))
        self.topic = LocalTopic(key=LOCAL_EVENTS_TOPIC_KEY, subscribers=subscribers, port=self.topic_port)
        try:
            self.topic.start()
        except OSError as exc:  # another stack on this machine has the port: any free one will do
            log.warning("events topic port %d: %s; using a free port", self.topic_port, exc)
            self.topic.close()
            self.topic = LocalTopic(key=LOCAL_EVENTS_TOPIC_KEY, subscribers=subscribers)
            self.topic.start()
        log.info("run events on %s (aztrain events tail --topic %s)", self.topic.endpoint, self.topic.endpoint)
        os.environ["AZTRAIN_EVENTS_TOPIC_ENDPOINT"] = self.topic.endpoint
        os.environ["AZTRAIN_EVENTS_TOPIC_KEY"] = self.topic.key

    @staticmethod
    def _end_jobs(local_state: Path) -> tuple[int, list[psutil.Process]]:
        """SIGTERM every process of the jobs under `local_state`, SIGKILL what is left after the grace.

        Returns how many there were, and any that survived even SIGKILL.
        """
        processes = stack_processes(local_state)
        _signal_all(processes, psutil.Process.terminate)
        alive = _wait_gone(processes, JOB_STOP_GRACE_SECONDS)
        # Anything started while the first ones stopped (a request in flight) is ended too.
        late = [p for p in stack_processes(local_state) if p not in processes]
        stragglers = alive + late
        if stragglers:
            log.warning("killing job processes still running after SIGTERM: %s", _describe(stragglers))
            _signal_all(stragglers, psutil.Process.kill)
        return len(processes) + len(late), _wait_gone(stragglers, KILL_WAIT_SECONDS)

    def _handle_signals(self, handler: _SignalHandler) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may install handlers; a stack in a thread stops on exit
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(sig, handler)
            self._previous_handlers.setdefault(sig, previous)

    def _restore_signals(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _ignore(signum: int, frame: FrameType | None) -> None:
    log.info("received %s while stopping; the stop carries on", signal.Signals(signum).name)


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` seconds for the processes to end; returns those still running."""
    deadline = time.monotonic() + timeout
    while (running := [p for p in processes if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def _running(process: psutil.Process) -> bool:
    # A zombie runs nothing: it only waits for its parent (or init, for orphans) to reap it, which
    # psutil.wait_procs would wait for too. Our own children (the supervisors) are reaped here.
    try:
        process.wait(timeout=0)
        return False
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            return process.status() != psutil.STATUS_ZOMBIE
        return False


def _describe(processes: list[psutil.Process]) -> str:
    return ", ".join(f"{p.pid} ({_name(p)})" for p in processes)


def _name(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.name()
    return "gone"


def _signal_all(processes: list[psutil.Process], send: Callable[[psutil.Process], None]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            send(process)

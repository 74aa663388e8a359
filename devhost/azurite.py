"""Azurite, the Azure Storage emulator, as a child process of the dev host or the tests."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: Where `make setup` (`npm ci`) puts the Azurite launcher, relative to the project root.
AZURITE_BINARY = Path("node_modules") / ".bin" / "azurite"

_ENDPOINTS = (("BlobEndpoint", "blob"), ("QueueEndpoint", "queue"), ("TableEndpoint", "table"))


class AzuriteError(RuntimeError):
    """Azurite could not be found, started or reached."""


def azurite_connection_string(
    account: str, *, blob_port: int = 10000, queue_port: int = 10001, table_port: int = 10002, host: str = "127.0.0.1"
) -> str:
    """`account` (a connection string for Azurite's development account) pointed at the given ports.

    The account name and key come from the caller (the core's settings hold the well-known
    ones), so this package repeats no credentials.
    """
    parts = _parse(account)
    name = parts["AccountName"]
    ports = {"blob": blob_port, "queue": queue_port, "table": table_port}
    for key, service in _ENDPOINTS:
        parts[key] = f"http://{host}:{ports[service]}/{name}"
    return "".join(f"{key}={value};" for key, value in parts.items())


class Azurite:
    """An Azurite process listening where `connection_string` points, data kept under `location`.

    The blob, queue and table endpoints of the connection string give the hosts and ports;
    the launcher is `node_modules/.bin/azurite` under `project_root`. Use as a context
    manager or call `start()` / `stop()`. If something already listens on the blob port, it
    is taken to be a running Azurite and reused: nothing is started, and `stop()` leaves it
    alone (it belongs to someone else).
    """

    def __init__(
        self,
        *,
        connection_string: str,
        location: Path,
        project_root: Path,
        startup_timeout: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.connection_string = connection_string
        self.location = Path(location)
        self.binary = Path(project_root) / AZURITE_BINARY
        self.blob_host, self.blob_port = _endpoint(connection_string, "BlobEndpoint")
        self.queue_host, self.queue_port = _endpoint(connection_string, "QueueEndpoint")
        self.table_host, self.table_port = _endpoint(connection_string, "TableEndpoint")
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.reused = False
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id of the Azurite this object started (None if none, or if it reused one)."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        """Azurite's stdout and stderr (a file, not a pipe: a full pipe would stall Azurite)."""
        return self.location / "azurite.out.log"

    def start(self) -> None:
        """Start Azurite (or adopt a running one) and return once blob and table ports accept connections."""
        if self._process is not None or self.reused:
            return
        if _accepts(self.blob_host, self.blob_port):
            self.reused = True
            log.info("Azurite already listening on %s:%d; reusing it", self.blob_host, self.blob_port)
            return
        if not self.binary.exists():
            raise AzuriteError(f"Azurite not found at {self.binary}; run `make setup` to install it")
        self.location.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--location",
            str(self.location),
            "--blobHost",
            self.blob_host,
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            self.queue_host,
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            self.table_host,
            "--tablePort",
            str(self.table_port),
        ]
        self._output = self.log_path.open("ab")
        try:
            # Own session, so stop() can signal Azurite and any node children as one group.
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            self._close_output()
            raise AzuriteError(f"could not run {self.binary} ({exc}); is Node.js installed? run `make setup`") from exc
        atexit.register(self.stop)  # a crash of the parent should not leave an orphaned emulator behind
        log.info(
            "starting Azurite on %s ports %d/%d/%d", self.blob_host, self.blob_port, self.queue_port, self.table_port
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the Azurite this object started: SIGTERM to its group, SIGKILL after `stop_grace` seconds."""
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                log.warning("Azurite ignored SIGTERM for %.0f s; killing it", self.stop_grace)
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        self._close_output()
        log.info("Azurite stopped")

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise AzuriteError(f"Azurite exited with code {code} while starting:\n{self._output_tail()}")
            if _accepts(self.blob_host, self.blob_port) and _accepts(self.table_host, self.table_port):
                return
            if time.monotonic() > deadline:
                raise AzuriteError(
                    f"Azurite did not open ports {self.blob_port} and {self.table_port} within "
                    f"{self.startup_timeout:.0f} s:\n{self._output_tail()}"
                )
            time.sleep(0.05)

    def _output_tail(self, limit: int = 3000) -> str:
        try:
            text = self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return "(no output captured)"
        return text.strip() or "(no output)"

    def _close_output(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None


def _parse(connection_string: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in connection_string.split(";") if part)


def _endpoint(connection_string: str, key: str) -> tuple[str, int]:
    url = urlsplit(_parse(connection_string).get(key, ""))
    if not url.hostname or url.port is None:
        raise AzuriteError(f"the connection string has no {key} with a host and port; Azurite needs all three")
    return url.hostname, url.port


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, sig)

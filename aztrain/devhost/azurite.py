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

from aztrain.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT

log = logging.getLogger(__name__)

#: Where `make setup` (`npm ci`) puts the Azurite launcher.
DEFAULT_AZURITE_BINARY = PROJECT_ROOT / "node_modules" / ".bin" / "azurite"

_ENDPOINTS = (("BlobEndpoint", "blob"), ("QueueEndpoint", "queue"), ("TableEndpoint", "table"))


class AzuriteError(RuntimeError):
    """Azurite could not be found, started or reached."""


def azurite_connection_string(
    *, blob_port: int = 10000, queue_port: int = 10001, table_port: int = 10002, host: str = "127.0.0.1"
) -> str:
    """The well-known Azurite connection string, pointed at the given ports.

    With the default ports it equals `aztrain.settings.AZURITE_CONNECTION_STRING`: the
    account name and key are taken from there rather than repeated here.
    """
    parts = dict(part.split("=", 1) for part in AZURITE_CONNECTION_STRING.split(";") if part)
    account = parts["AccountName"]
    ports = {"blob": blob_port, "queue": queue_port, "table": table_port}
    for key, service in _ENDPOINTS:
        parts[key] = f"http://{host}:{ports[service]}/{account}"
    return "".join(f"{key}={value};" for key, value in parts.items())


class Azurite:
    """An Azurite process on chosen ports, data kept under `location`.

    Use as a context manager or call `start()` / `stop()`. If something already listens
    on the blob port, it is taken to be a running Azurite and reused: nothing is started,
    and `stop()` leaves it alone (it belongs to someone else).
    """

    def __init__(
        self,
        *,
        location: Path,
        blob_port: int = 10000,
        queue_port: int = 10001,
        table_port: int = 10002,
        host: str = "127.0.0.1",
        binary: Path = DEFAULT_AZURITE_BINARY,
        startup_timeout: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.location = Path(location)
        self.blob_port = blob_port
        self.queue_port = queue_port
        self.table_port = table_port
        self.host = host
        self.binary = Path(binary)
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.reused = False
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """Connection string for this instance's ports."""
        return azurite_connection_string(
            blob_port=self.blob_port, queue_port=self.queue_port, table_port=self.table_port, host=self.host
        )

    @property
    def log_path(self) -> Path:
        """Azurite's stdout and stderr (a file, not a pipe: a full pipe would stall Azurite)."""
        return self.location / "azurite.out.log"

    def start(self) -> None:
        """Start Azurite (or adopt a running one) and return once blob and table ports accept connections."""
        if self._process is not None or self.reused:
            return
        if _accepts(self.host, self.blob_port):
            self.reused = True
            log.info("Azurite already listening on %s:%d; reusing it", self.host, self.blob_port)
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
            self.host,
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            self.host,
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            self.host,
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
        log.info("starting Azurite on %s ports %d/%d/%d", self.host, self.blob_port, self.queue_port, self.table_port)
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
            if _accepts(self.host, self.blob_port) and _accepts(self.host, self.table_port):
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


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, sig)

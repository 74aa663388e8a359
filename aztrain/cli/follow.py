"""Following a run as it happens: its state timeline and per-epoch progress, or its log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.status import Status

from aztrain.api import models as api
from aztrain.api.models import LogChunk
from aztrain.cli.client import ApiError, Client
from aztrain.cli.output import Out, epoch_line, transition_line
from aztrain.domain.errors import AztrainError

#: How often a followed run is asked about. A run's states and epochs arrive seconds apart.
POLL_SECONDS = 0.5
#: States whose run may have written per-epoch metrics.
_TRAINING = frozenset({"RUNNING", "CANCEL_REQUESTED", "COMPLETED", "FAILED", "CANCELED"})


class WaitTimedOut(AztrainError):
    """A followed run did not end within the time given; `run` is how it was last seen."""

    def __init__(self, run: api.RunDetail, seconds: float) -> None:
        super().__init__(f"run {run.short_id} still {run.state} after {seconds:.0f} s")
        self.run = run


class RunFollower:
    """Prints each new history row and each newly finished epoch of one run until it ends."""

    def __init__(self, client: Client, out: Out, *, total_epochs: int | None = None) -> None:
        self.client = client
        self.out = out
        self.total_epochs = total_epochs
        self.metrics: api.Metrics | None = None
        self._rows = 0
        self._epochs = 0
        self._metrics_served = True

    def follow(self, run_id: str, *, timeout: float) -> api.RunDetail:
        """The run once terminal, with `self.metrics` its last per-epoch metrics; `WaitTimedOut` after `timeout`."""
        started = time.monotonic()
        with self._status() as status:
            while True:
                run = self.client.run(run_id)
                self._show_history(run)
                if run.state in _TRAINING:
                    self._show_epochs(run_id)
                if run.terminal:
                    return run
                elapsed = time.monotonic() - started
                if elapsed > timeout:
                    raise WaitTimedOut(run, timeout)
                if status is not None:
                    epoch = f" · epoch {self._epochs}" + (f"/{self.total_epochs}" if self.total_epochs else "")
                    status.update(f"{run.state}{epoch if self._epochs else ''} · {elapsed:.0f} s · run {run.short_id}")
                time.sleep(POLL_SECONDS)

    def _status(self) -> contextlib.AbstractContextManager[Status | None]:
        """A spinner on a terminal; nothing when piped or in JSON mode."""
        if self.out.as_json or not self.out.console.is_terminal:
            return contextlib.nullcontext()
        return self.out.console.status("following the run", spinner="dots")

    def _show_history(self, run: api.RunDetail) -> None:
        rows = run.history
        for row in rows[self._rows :]:
            self.out.line(transition_line(row))
        self._rows = len(rows)

    def _show_epochs(self, run_id: str) -> None:
        if not self._metrics_served:
            return
        try:
            self.metrics = self.client.metrics(run_id)
        except ApiError as exc:
            # An API without the metrics endpoint: follow the states alone.
            self._metrics_served = not exc.endpoint_missing
            return
        epochs = self.metrics.epochs
        for row in epochs[self._epochs :]:
            self.out.line(epoch_line(row, self.total_epochs))
        self._epochs = len(epochs)


def follow_log(client: Client, run_id: str, *, start: LogChunk, is_over: Callable[[], bool]) -> Iterator[LogChunk]:
    """Chunks of the log as they are written, from `start` on, until `is_over()` and nothing more is written."""
    chunk = start
    while True:
        over = is_over()  # asked before reading, so the last lines written before the end are read
        chunk = client.logs(run_id, offset=chunk.next_offset)
        if chunk.text:
            yield chunk
        elif over:
            return
        else:
            time.sleep(POLL_SECONDS)

"""Timer triggers, run every few seconds instead of on their NCRONTAB schedule.

A local loop wants the reconciler now, not at the top of the minute, so every timer
function runs at one fixed dev `interval` (seconds after its previous run finished).
Each timer has its own thread and lock: a slow run delays its own next run but never
overlaps itself, nor holds up other timers. `run_on_startup=True` runs it once at start,
as in Azure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

# `func.TimerRequest` is the abstract base; the worker builds this concrete class.
from azure.functions.timer import TimerRequest

from devhost.functions_index import TimerFunction
from devhost.invoke import Invoker

log = logging.getLogger(__name__)


class TimerRunner:
    """Runs timer functions periodically in background threads; `run_once()` runs them all now."""

    def __init__(self, timers: Sequence[TimerFunction], invoker: Invoker, *, interval: float | None) -> None:
        """`interval` None (or <= 0) means no background runs: only `run_once()` triggers timers."""
        self._timers = list(timers)
        self._invoker = invoker
        self._interval = interval if interval and interval > 0 else None
        self._locks = {timer.name: threading.Lock() for timer in self._timers}
        self._last_run: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per timer function (none when there is no interval)."""
        if self._interval is None or self._threads:
            return
        self._stop.clear()
        for timer in self._timers:
            thread = threading.Thread(target=self._loop, args=(timer,), name=f"devhost-timer-{timer.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
            log.info("timer %s (%s in Azure) runs every %.1f s here", timer.name, timer.schedule, self._interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loops; waits up to `timeout` seconds for runs in progress to finish."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s still running after stop; leaving it to finish", thread.name)
        self._threads = []

    def run_once(self) -> dict[str, BaseException | None]:
        """Run every timer function now, in this thread, each after any run of it in progress.

        Returns each function's outcome: None, or the exception it raised (also logged).
        """
        return {timer.name: self._run(timer) for timer in self._timers}

    def _loop(self, timer: TimerFunction) -> None:
        assert self._interval is not None
        if timer.run_on_startup:
            self._run(timer)
        # Event.wait doubles as the interval and as the prompt wake-up on stop().
        while not self._stop.wait(self._interval):
            self._run(timer)

    def _run(self, timer: TimerFunction) -> BaseException | None:
        with self._locks[timer.name]:
            now = datetime.now(UTC)
            last = self._last_run.get(timer.name, now)
            step = timedelta(seconds=self._interval or 0)
            request = TimerRequest(
                past_due=False,
                schedule_status={
                    "Last": last.isoformat(),
                    "Next": (now + step).isoformat(),
                    "LastUpdated": now.isoformat(),
                },
                schedule={"AdjustForDST": True},
            )
            started = time.monotonic()
            try:
                self._invoker.call(timer, request)
            except Exception as exc:
                log.exception("timer %s failed", timer.name)
                return exc
            finally:
                self._last_run[timer.name] = now
            log.debug("timer %s ran in %.0f ms", timer.name, (time.monotonic() - started) * 1000)
            return None

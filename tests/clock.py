"""The control plane's time in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """Test time: moves 10 ms per reading, and jumps when told."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(milliseconds=10)
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

"""The response the dev host writes back: status, headers, body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    """An HTTP response, independent of the server that writes it."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        """A JSON response."""
        return cls(status, json.dumps(payload).encode(), (("Content-Type", "application/json"),))

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        """A JSON `{"error": message}` response."""
        return cls.json(status, {"error": message})

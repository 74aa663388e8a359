"""The response the dev host writes back: status, headers, body."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

INTERNAL_ERROR = "internal server error; the dev host log has the details under this correlation id"


def correlation_id() -> str:
    """A fresh id tying a 500 reply to the log lines that explain it."""
    return str(uuid.uuid4())


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

    @classmethod
    def problem(cls, status: int, detail: str) -> Reply:
        """An RFC 9457 problem (`application/problem+json`) of no particular type, as `about:blank` means."""
        body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
        return cls(status, json.dumps(body).encode(), (("Content-Type", "application/problem+json"),))

    @classmethod
    def internal_error(cls, correlation: str) -> Reply:
        """A 500 that tells the caller nothing of the failure but where to find it in the log.

        The Functions host answers a failed invocation without exception text; the dev host does
        the same, so storage request ids and error bodies never reach a client.
        """
        return cls.json(500, {"error": INTERNAL_ERROR, "correlation_id": correlation})

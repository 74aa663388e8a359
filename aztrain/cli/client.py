"""A small HTTP client for the aztrain API (the CLI and the demo use it; so can scripts).

Errors are read in both shapes the API has answered with: RFC 9457 problem details
(`application/problem+json`: `title`, `detail`, `errors: [{field, message}]`) and the
older `{"error": ...}`. An endpoint this API version does not serve yet raises an
`ApiError` whose `endpoint_missing` is true, so callers can say so instead of "not found".
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aztrain.api.principal import USER_HEADER
from aztrain.domain.errors import AztrainError

DEFAULT_URL = "http://127.0.0.1:7071"
#: The shortest run id prefix the API (and this client) resolves.
MIN_RUN_PREFIX = 6
#: How many recent runs the client searches for a prefix when the API cannot resolve prefixes itself.
_PREFIX_SEARCH_LIMIT = 500
#: Attempts of a POST /api/jobs whose answer was lost; the Idempotency-Key makes them one submit.
_SUBMIT_ATTEMPTS = 3
_RETRY_STATUSES = frozenset({502, 503, 504})


class ApiUnreachable(AztrainError):
    """No answer from the API: connection refused, name not resolved, or timed out.

    `maybe_delivered` is false when the request certainly never reached the API (refused, unresolvable).
    """

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class AmbiguousRunId(AztrainError):
    """A run id prefix matches more than one run."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        super().__init__(f"run id prefix {prefix!r} matches {len(matches)} runs ({shown}); give more characters")
        self.matches = matches


class ApiError(AztrainError):
    """The API answered with an error status; `body` holds its JSON document as sent."""

    def __init__(self, status: int, body: dict[str, Any], *, path: str = "") -> None:
        self.status = status
        self.body = body
        self.path = path
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """What went wrong, in the API's words (problem `detail`, old-style `error`, or the status phrase)."""
        for key in ("detail", "error", "title"):
            if isinstance(self.body.get(key), str) and self.body[key]:
                return str(self.body[key])
        return _phrase(self.status)

    @property
    def problems(self) -> list[str]:
        """Field-level problems of a problem+json answer, as `field: message`."""
        found = self.body.get("errors")
        if not isinstance(found, list):
            return []
        return [f"{p['field']}: {p['message']}" if p.get("field") else str(p.get("message")) for p in found]

    @property
    def endpoint_missing(self) -> bool:
        """404 from the host, not from a handler: this API version has no such route (an older function app)."""
        # A missing route on Azure answers an empty body; the dev host names the route it did not find.
        return self.status == 404 and (not self.body or self.message.startswith("no HTTP function at"))


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body or b"{}"))


@dataclass(frozen=True)
class LogChunk:
    """Log text from `offset` on; `next_offset` is where the next read continues."""

    text: str
    offset: int
    next_offset: int


class Client:
    """Calls `/api/...` on a Functions host (the local dev host or Azure, with a function key)."""

    def __init__(self, base_url: str = DEFAULT_URL, *, key: str = "", user: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.user = user  # the dev host's user to act as; in Azure the platform signs the caller in
        self.timeout = timeout

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        """One request; `ApiError` for an error status, `ApiUnreachable` when nothing answered."""
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v})
        url = f"{self.base_url}/api/{path}" + (f"?{query}" if query else "")
        all_headers = {"content-type": "application/json", **(headers or {})}
        if self.key:
            all_headers["x-functions-key"] = self.key
        if self.user:
            all_headers[USER_HEADER] = self.user
        request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return Response(reply.status, dict(reply.headers.items()), reply.read())
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _error_body(exc.read()), path=path) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiUnreachable(
                f"cannot reach the aztrain API at {self.base_url}: {reason}",
                maybe_delivered=not isinstance(reason, (ConnectionRefusedError, socket.gaierror)),
            ) from None

    def request(self, method: str, path: str, body: bytes | None = None, **params: str) -> dict[str, Any]:
        """One request whose answer is JSON."""
        return self.send(method, path, body, params=params).json()

    def submit(self, manifest: bytes, *, force: bool = False, idempotency_key: str = "") -> dict[str, Any]:
        """POST a manifest: `{run, created, reason, job, waiting}`. Retried when the answer is lost, as one submit."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        params = {"force": "true" if force else ""}

        def post() -> dict[str, Any]:
            return self.send("POST", "jobs", manifest, headers=headers, params=params).json()

        for attempt in range(1, _SUBMIT_ATTEMPTS):
            try:
                return post()
            except ApiUnreachable as exc:
                if not exc.maybe_delivered:
                    raise
            except ApiError as exc:
                if exc.status not in _RETRY_STATUSES:
                    raise
            time.sleep(0.5 * attempt)  # a restarting host or a dropped connection: give it a moment
        return post()

    def runs_page(
        self, *, job: str = "", state: str = "", limit: int = 50, continuation: str = ""
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of runs, newest first, and the token of the next page (None when there is none)."""
        page = self.request("GET", "runs", job=job, state=state, limit=str(limit), continuation=continuation)
        return list(page["runs"]), page.get("next") or None

    def runs(self, *, job: str = "", state: str = "", limit: int = 50) -> list[dict[str, Any]]:
        return self.runs_page(job=job, state=state, limit=limit)[0]

    def run(self, run_id: str, *, all_history: bool = False) -> dict[str, Any]:
        """A run with its history, by id or by a unique prefix of at least `MIN_RUN_PREFIX` characters.

        The history leaves out refused transitions unless `all_history`.
        """
        shown = "true" if all_history else ""
        try:
            return self.request("GET", f"runs/{urllib.parse.quote(run_id)}", all=shown)
        except ApiError as exc:
            if exc.status == 409:  # the API resolves prefixes and found several
                raise AmbiguousRunId(run_id, _run_ids(exc.body.get("candidates"))) from None
            if exc.status != 404 or len(run_id) < MIN_RUN_PREFIX:
                raise
            # An API that predates prefixes: find the prefix among recent runs.
            matches = [r["id"] for r in self.runs(limit=_PREFIX_SEARCH_LIMIT) if r["id"].startswith(run_id)]
            if len(matches) > 1:
                raise AmbiguousRunId(run_id, matches) from None
            if not matches or matches[0] == run_id:
                raise
            return self.request("GET", f"runs/{urllib.parse.quote(matches[0])}", all=shown)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self.request("POST", f"runs/{urllib.parse.quote(run_id)}/cancel")

    def logs(self, run_id: str, *, offset: int = 0, tail: int = 0) -> LogChunk:
        """The run's log from byte `offset` on, or its last `tail` lines."""
        reply = self.send(
            "GET",
            f"runs/{urllib.parse.quote(run_id)}/logs",
            params={"offset": str(offset) if offset else "", "tail": str(tail) if tail else ""},
        )
        headers = {k.lower(): v for k, v in reply.headers.items()}
        # The header names the next offset (an API before problem+json called it X-Log-Offset).
        next_offset = int(headers.get("x-log-next-offset") or headers.get("x-log-offset") or offset + len(reply.body))
        return LogChunk(reply.body.decode(errors="replace"), offset, next_offset)

    def metrics(self, run_id: str) -> dict[str, Any]:
        """Per-epoch metrics so far and the final ones: `{epochs: [...], final: {...}}`."""
        return self.request("GET", f"runs/{urllib.parse.quote(run_id)}/metrics")

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "jobs")["jobs"])

    def clusters(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "clusters")["clusters"])

    def dead_letters(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "deadletters")["deadletters"])

    def window(self, job: str) -> dict[str, Any]:
        return self.request("GET", f"jobs/{urllib.parse.quote(job)}/window")

    def models(self, name: str = "") -> list[dict[str, Any]]:
        if name:
            return list(self.model(name)["versions"])
        return list(self.request("GET", "models")["models"])

    def model(self, name: str) -> dict[str, Any]:
        """One model: `{name, current, versions}`."""
        return self.request("GET", f"models/{urllib.parse.quote(name)}")

    def lineage(self, name: str, version: int) -> dict[str, Any]:
        return self.request("GET", f"models/{urllib.parse.quote(name)}/versions/{version}")

    def health(self) -> dict[str, Any]:
        return self.request("GET", "health")

    def watch(
        self,
        run_id: str,
        *,
        timeout: float = 900.0,
        interval: float = 0.5,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a run until it is terminal, calling `on_change` with each new history row. Returns the run."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            run = self.run(run_id)
            for row in run.get("history", [])[seen:]:
                if on_change:
                    on_change(row)
            seen = len(run.get("history", []))
            if run["terminal"]:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(interval)


def _error_body(payload: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(payload) if payload.strip() else {}
    except ValueError:
        return {"error": payload.decode(errors="replace").strip()}
    return decoded if isinstance(decoded, dict) else {"error": decoded}


def _run_ids(matches: Any) -> list[str]:
    """The run ids a 409 lists as `candidates`, if it does."""
    return [str(m) for m in matches] if isinstance(matches, list) else []


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP status {status}"

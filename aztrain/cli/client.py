"""A small HTTP client for the aztrain API (the CLI and the demo use it; so can scripts).

Answers come back as the `aztrain.api` models the service builds them from (`cli.answers`), so no
caller reads a response by string key. It runs past 300 lines because it has one short method per
API route, beside the two error shapes it reads and the retry of a submit whose answer was lost.

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
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from aztrain.api import models as api
from aztrain.api.models import LogChunk
from aztrain.api.principal import USER_HEADER
from aztrain.cli.answers import known_fields, parse_answer
from aztrain.domain.errors import AztrainError

DEFAULT_URL = "http://127.0.0.1:7071"
#: What a run reference may say instead of an id: the newest run (one page of one run, whatever the history).
LAST_RUN = "last"
#: Attempts of a POST /api/jobs whose answer was lost; the Idempotency-Key makes them one submit.
_SUBMIT_ATTEMPTS = 3
_RETRY_STATUSES = frozenset({502, 503, 504})
M = TypeVar("M", bound=BaseModel)


class ApiUnreachable(AztrainError):
    """No answer from the API: connection refused, name not resolved, or timed out.

    `maybe_delivered` is false when the request certainly never reached the API (refused, unresolvable).
    """

    def __init__(self, message: str, *, maybe_delivered: bool) -> None:
        super().__init__(message)
        self.maybe_delivered = maybe_delivered


class AmbiguousRunId(AztrainError):
    """A run reference (short id or prefix) matches more than one run."""

    def __init__(self, ref: str, matches: list[str]) -> None:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        super().__init__(f"run {ref!r} matches {len(matches)} runs ({shown}); give the full id of the one you mean")
        self.matches = matches


class _ErrorAnswer(BaseModel):
    """An error body in either shape the API has used; every field optional, unknown ones ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    title: str = ""
    detail: str = ""
    error: str = ""
    errors: list[api.FieldError] = []
    run: api.RunView | None = None
    candidates: list[str] = []


class ApiError(AztrainError):
    """The API answered with an error status; `body` holds its JSON document as sent (for scripts)."""

    def __init__(self, status: int, body: dict[str, Any], *, path: str = "") -> None:
        self.status = status
        self.body = body
        self.path = path
        try:
            self.answer = _ErrorAnswer.model_validate(known_fields(_ErrorAnswer, body))
        except ValidationError:  # an error body of no shape we know: the status says it
            self.answer = _ErrorAnswer()
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """What went wrong, in the API's words (problem `detail`, old-style `error`, or the status phrase)."""
        return self.answer.detail or self.answer.error or self.answer.title or _phrase(self.status)

    @property
    def problems(self) -> list[str]:
        """Field-level problems of a problem+json answer, as `field: message`."""
        return [f"{p.field}: {p.message}" if p.field else p.message for p in self.answer.errors]

    @property
    def rejected_run(self) -> api.RunView | None:
        """The REJECTED run a refused manifest was recorded as."""
        return self.answer.run

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
        """One request whose answer is JSON, as sent (for scripts; the methods below answer models)."""
        return self.send(method, path, body, params=params).json()

    def get(self, model: type[M], path: str, *, method: str = "GET", **params: str) -> M:
        """One request whose answer is `model`."""
        return parse_answer(model, self.send(method, path, params=params).json(), path=path)

    def submit(self, manifest: bytes, *, force: bool = False, idempotency_key: str = "") -> api.Submitted:
        """POST a manifest. Retried when the answer is lost, as one submit (the Idempotency-Key)."""
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        params = {"force": "true" if force else ""}

        def post() -> api.Submitted:
            answer = self.send("POST", "jobs", manifest, headers=headers, params=params).json()
            return parse_answer(api.Submitted, answer, path="jobs")

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

    def runs_page(self, *, job: str = "", state: str = "", limit: int = 50, continuation: str = "") -> api.RunList:
        """One page of runs, newest first, with the token of the next page (`next`, None when there is none)."""
        return self.get(api.RunList, "runs", job=job, state=state, limit=str(limit), continuation=continuation)

    def runs(self, *, job: str = "", state: str = "", limit: int = 50) -> list[api.RunView]:
        return self.runs_page(job=job, state=state, limit=limit).runs

    def run(self, ref: str, *, all_history: bool = False) -> api.RunDetail:
        """A run with its history, by id, short id, unique prefix, or `last` (the newest run).

        The history leaves out refused transitions unless `all_history`.
        """
        if ref == LAST_RUN:
            newest = self.runs(limit=1)
            if not newest:
                raise AztrainError("there is no run yet: `aztrain submit FILE` starts one")
            ref = newest[0].id
        try:
            return self.get(api.RunDetail, f"runs/{urllib.parse.quote(ref)}", all="true" if all_history else "")
        except ApiError as exc:
            if exc.status == 409 and exc.answer.candidates:  # a short id or prefix several runs have
                raise AmbiguousRunId(ref, exc.answer.candidates) from None
            raise

    def cancel(self, run_id: str) -> api.RunView:
        return self.get(api.RunView, f"runs/{urllib.parse.quote(run_id)}/cancel", method="POST")

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

    def output_files(self, run_id: str) -> list[api.OutputFile]:
        """The files at the top of a run's outputs folder (model, metrics)."""
        return self.get(api.OutputList, f"runs/{urllib.parse.quote(run_id)}/outputs").files

    def output(self, run_id: str, name: str) -> bytes:
        """One of a run's output files (`model.pt`, `metrics.json`, ...)."""
        return self.send("GET", f"runs/{urllib.parse.quote(run_id)}/outputs/{urllib.parse.quote(name)}").body

    def metrics(self, run_id: str) -> api.Metrics:
        """Per-epoch metrics so far and the final ones."""
        return self.get(api.Metrics, f"runs/{urllib.parse.quote(run_id)}/metrics")

    def jobs(self) -> list[api.JobView]:
        return self.get(api.JobList, "jobs").jobs

    def clusters(self) -> list[api.ClusterView]:
        return self.get(api.ClusterList, "clusters").clusters

    def dead_letters(self) -> list[api.DeadLetterView]:
        return self.get(api.DeadLetterList, "deadletters").deadletters

    def window(self, job: str) -> api.WindowView:
        return self.get(api.WindowView, f"jobs/{urllib.parse.quote(job)}/window")

    def models(self, name: str = "") -> list[api.ModelView]:
        return self.model(name).versions if name else self.get(api.ModelList, "models").models

    def model(self, name: str) -> api.ModelVersions:
        """One model: its versions and the current (promoted) one."""
        return self.get(api.ModelVersions, f"models/{urllib.parse.quote(name)}")

    def lineage(self, name: str, version: int) -> api.Lineage:
        return self.get(api.Lineage, f"models/{urllib.parse.quote(name)}/versions/{version}")

    def health(self) -> api.Health:
        try:
            return self.get(api.Health, "health")
        except ApiError as exc:
            if exc.status != 503:
                raise
            return parse_answer(api.Health, exc.body, path="health")  # unhealthy, and says why

    def watch(
        self,
        run_id: str,
        *,
        timeout: float = 900.0,
        interval: float = 0.5,
        on_change: Callable[[api.TransitionView], None] | None = None,
    ) -> api.RunDetail:
        """Poll a run until it is terminal, calling `on_change` with each new history row. Returns the run."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            run = self.run(run_id)
            for row in run.history[seen:]:
                if on_change:
                    on_change(row)
            seen = len(run.history)
            if run.terminal:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run.short_id} still {run.state} after {timeout:.0f} s")
            time.sleep(interval)


def _error_body(payload: bytes) -> dict[str, Any]:
    try:
        decoded = json.loads(payload) if payload.strip() else {}
    except ValueError:
        return {"error": payload.decode(errors="replace").strip()}
    return decoded if isinstance(decoded, dict) else {"error": decoded}


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP status {status}"

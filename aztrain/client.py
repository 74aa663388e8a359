"""A small HTTP client for the aztrain API (the CLI and the demo use it; so can scripts)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from aztrain.errors import AztrainError

DEFAULT_URL = "http://127.0.0.1:7071"


class ApiError(AztrainError):
    """The API answered with an error status; `body` holds its JSON (with `error`)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class Client:
    """Calls `/api/...` on a Functions host (the local dev host or Azure, with a function key)."""

    def __init__(self, base_url: str = DEFAULT_URL, *, key: str = "", timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | None = None, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v})
        url = f"{self.base_url}/api/{path}" + (f"?{query}" if query else "")
        headers = {"content-type": "application/json"}
        if self.key:
            headers["x-functions-key"] = self.key
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return dict(json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                decoded = json.loads(payload)
            except ValueError:
                decoded = {"error": payload.decode(errors="replace")}
            raise ApiError(exc.code, decoded if isinstance(decoded, dict) else {"error": decoded}) from None
        except urllib.error.URLError as exc:
            raise AztrainError(f"cannot reach {self.base_url}: {exc.reason}; is `aztrain dev` running?") from None

    def submit(self, manifest: bytes, *, force: bool = False) -> dict[str, Any]:
        return self.request("POST", "jobs", manifest, force="true" if force else "")

    def runs(self, *, job: str = "", state: str = "", limit: int = 50) -> list[dict[str, Any]]:
        return list(self.request("GET", "runs", job=job, state=state, limit=str(limit))["runs"])

    def run(self, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"runs/{urllib.parse.quote(run_id)}")

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self.request("POST", f"runs/{urllib.parse.quote(run_id)}/cancel")

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "jobs")["jobs"])

    def clusters(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "clusters")["clusters"])

    def window(self, job: str) -> dict[str, Any]:
        return self.request("GET", f"jobs/{urllib.parse.quote(job)}/window")

    def models(self, name: str = "") -> list[dict[str, Any]]:
        if name:
            return list(self.request("GET", f"models/{urllib.parse.quote(name)}")["versions"])
        return list(self.request("GET", "models")["models"])

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

"""`aztrain events notify`: the topic's run and budget events become chat messages on a Slack or Teams webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aztrain.cli.main import main

EVENTS = [
    {"type": "aztrain.run.running", "data": {"run_id": "8204142846813-2a1d62", "job": "digits", "state": "RUNNING"}},
    {
        "type": "aztrain.run.completed",
        "data": {"run_id": "8204142846813-2a1d62", "job": "digits", "state": "COMPLETED",
                 "metrics": {"accuracy": 0.97}},
    },
    {
        "type": "aztrain.run.failed",
        "data": {"run_id": "8204142846000-00beef", "job": "digits", "state": "FAILED", "error": "no data\nmore"},
    },
    {
        "type": "aztrain.budget.threshold_crossed",
        "data": {"team": "vision", "month": "2026-12", "threshold_percent": 80, "budget": 500, "spent": 401.5,
                 "run_id": "8204142846813-2a1d62", "job": "digits"},
    },
]  # fmt: skip


@pytest.fixture
def servers() -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """A topic holding EVENTS (as `aztrain dev` serves it) and a chat webhook that keeps what it is sent."""
    posted: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the topic: GET /api/events?after=<n>
            self._answer({"events": EVENTS, "next": len(EVENTS)})

        def do_POST(self) -> None:  # the webhook
            posted.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self._answer({"ok": True})

        def _answer(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield f"{url}/api/events", f"{url}/hook", posted
    server.shutdown()
    server.server_close()


def test_each_ended_run_and_budget_alert_is_one_slack_message(servers, capsys) -> None:
    topic, hook, posted = servers
    assert main(["events", "notify", "--webhook", hook, "--topic", topic, "--once"]) == 0
    assert [p["text"] for p in posted] == [
        "run 2a1d62 of job digits COMPLETED: accuracy 0.9700",
        "run 00beef of job digits FAILED: no data",
        "team vision has spent 401.5 of its 500 budget for 2026-12 (80 %), last by run 2a1d62",
    ]
    assert hook not in capsys.readouterr().out  # a webhook URL is a secret


def test_a_teams_webhook_gets_an_adaptive_card(servers) -> None:
    topic, hook, posted = servers
    assert main(["events", "notify", "--webhook", hook, "--chat", "teams", "--topic", topic, "--once"]) == 0
    (attachment,) = posted[0]["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["body"][0]["text"] == "run 2a1d62 of job digits COMPLETED: accuracy 0.9700"

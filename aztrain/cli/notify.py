"""`aztrain events notify`: run and budget events posted to a Teams or Slack incoming webhook, as chat messages.

Event Grid cannot push to a chat webhook itself: it first asks the endpoint to prove it wants the events
(learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema, "Endpoint validation"),
which Slack and Teams webhooks never answer. So a relay reads the events and posts a message for each:
on the dev host this command, on the local topic; in Azure the same messages from a Logic App or a
function subscribed to the topic (docs/events.md, "Notifications").

Slack's incoming webhooks take `{"text": ...}` (api.slack.com/messaging/webhooks); a Teams channel's
Workflows webhook ("Post to a channel when a webhook request is received") takes a message whose one
attachment is an Adaptive Card.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Literal

from aztrain.api.events import CloudEvent

#: The events worth a message: a run's end, and a team's budget threshold crossed.
NOTIFIED = (
    "aztrain.run.completed",
    "aztrain.run.failed",
    "aztrain.run.canceled",
    "aztrain.run.rejected",
    "aztrain.budget.threshold_crossed",
)
Chat = Literal["slack", "teams"]


def message(event: CloudEvent) -> str | None:
    """The chat line for one CloudEvent, or None for an event not worth one."""
    kind, data = event.type, event.data
    if kind not in NOTIFIED:
        return None
    if kind == "aztrain.budget.threshold_crossed":
        return (
            f"team {data.team} has spent {data.spent} of its {data.budget} budget for "
            f"{data.month} ({data.threshold_percent} %), last by run {_short(data.run_id)}"
        )
    run = f"run {_short(data.run_id)} of job {data.job}"
    state = data.state or kind.rsplit(".", 1)[-1].upper()
    if state == "COMPLETED":
        figures = data.metrics
        shown = ", ".join(f"{k} {figures[k]:.4f}" for k in ("accuracy", "loss") if isinstance(figures.get(k), float))
        return f"{run} COMPLETED" + (f": {shown}" if shown else "")
    reason = (data.error or "").strip().splitlines()
    return f"{run} {state}" + (f": {reason[0]}" if reason else "")


def payload(text: str, chat: Chat) -> dict[str, Any]:
    """What the chat's incoming webhook takes for one line of text."""
    if chat == "slack":
        return {"text": text}
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [{"type": "TextBlock", "text": text, "wrap": True}],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }


def post(webhook: str, text: str, chat: Chat, *, timeout: float = 10.0) -> None:
    """Post one message; `OSError` (an `URLError`) if the webhook did not take it."""
    body = json.dumps(payload(text, chat)).encode()
    request = urllib.request.Request(webhook, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        reply.read()


def _short(run_id: object) -> str:
    return str(run_id or "?").rsplit("-", 1)[-1]

"""`aztrain events tail | notify`: the outbound run events the local topic accepted, live, or as chat messages."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer

from aztrain.cli.app import app, examples
from aztrain.domain.errors import AztrainError
from aztrain.service.settings import LOCAL_EVENTS_TOPIC, LOCAL_EVENTS_TOPIC_KEY

events = typer.Typer(
    help="Outbound run events (CloudEvents on the Event Grid topic).",
    no_args_is_help=True,
    epilog=examples("aztrain events tail", "aztrain events tail --type aztrain.run.completed --json"),
)
app.add_typer(events, name="events")


@events.command(epilog=examples("aztrain events tail", "aztrain events tail --once --json"))
def tail(
    topic: Annotated[
        str, typer.Option(envvar="AZTRAIN_EVENTS_TOPIC_ENDPOINT", help="The local topic (`aztrain dev` serves it).")
    ] = LOCAL_EVENTS_TOPIC,
    key: Annotated[
        str, typer.Option(envvar="AZTRAIN_EVENTS_TOPIC_KEY", help="The topic's key.")
    ] = LOCAL_EVENTS_TOPIC_KEY,
    types: Annotated[list[str] | None, typer.Option("--type", help="Only events of this type (repeatable).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print the events so far and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One CloudEvent (JSON) per line.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the topic.")] = 1.0,
) -> None:
    """Show events as the topic accepts them: time, type, subject, id and correlation id."""
    after = 0
    try:
        while True:
            batch, after = _since(topic, key, after)
            for event in batch:
                if not types or event.get("type") in types:
                    print(json.dumps(event) if as_json else _line(event), flush=True)
            if once:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


@events.command(
    epilog=examples(
        "aztrain events notify --webhook https://hooks.slack.com/services/T000/B000/XXXX",
        "AZTRAIN_NOTIFY_WEBHOOK=https://....logic.azure.com/... aztrain events notify --chat teams",
    )
)
def notify(
    webhook: Annotated[
        str,
        typer.Option(
            envvar="AZTRAIN_NOTIFY_WEBHOOK",
            help="The chat's incoming webhook URL (a secret: prefer the environment variable).",
            show_default=False,
        ),
    ],
    chat: Annotated[str, typer.Option(help="What the webhook is: slack or teams (a Workflows webhook).")] = "slack",
    topic: Annotated[
        str, typer.Option(envvar="AZTRAIN_EVENTS_TOPIC_ENDPOINT", help="The local topic (`aztrain dev` serves it).")
    ] = LOCAL_EVENTS_TOPIC,
    key: Annotated[
        str, typer.Option(envvar="AZTRAIN_EVENTS_TOPIC_KEY", help="The topic's key.")
    ] = LOCAL_EVENTS_TOPIC_KEY,
    once: Annotated[bool, typer.Option("--once", help="Post for the events so far and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the topic.")] = 1.0,
) -> None:
    """Post a chat message for each run that ends (completed, failed, canceled, rejected) and each budget alert."""
    from aztrain.cli.notify import message, post

    if chat not in ("slack", "teams"):
        raise typer.BadParameter("use slack or teams", param_hint="--chat")
    after = 0
    try:
        while True:
            batch, after = _since(topic, key, after)
            for event in batch:
                text = message(event)
                if text is None:
                    continue
                try:
                    post(webhook, text, "teams" if chat == "teams" else "slack")
                except OSError as exc:  # the URL is a secret: say what failed, not where
                    raise AztrainError(f"the {chat} webhook did not take the message ({exc})") from None
                print(f"posted: {text}", flush=True)
            if once:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def _since(topic: str, key: str, after: int) -> tuple[list[dict[str, Any]], int]:
    request = urllib.request.Request(f"{topic}?after={after}", headers={"aeg-sas-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise AztrainError(f"cannot read events from {topic} ({exc}); is `aztrain dev` running?") from None
    return body["events"], int(body["next"])


def _line(event: dict[str, Any]) -> str:
    correlation = event.get("correlationid", "")
    return f"{event.get('time', '')[:23]}  {event['type']:<32} {event.get('subject', '')}  {event['id']}  {correlation}"

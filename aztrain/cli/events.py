"""`aztrain events tail | notify`: the outbound run events the local topic accepted, live, or as chat messages."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Annotated

import typer
from pydantic import ValidationError

from aztrain.api.events import CloudEvent, TopicPage
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
                if not types or event.type in types:
                    shown = json.dumps(event.model_dump(mode="json", exclude_unset=True)) if as_json else _line(event)
                    print(shown, flush=True)
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


def _since(topic: str, key: str, after: int) -> tuple[list[CloudEvent], int]:
    request = urllib.request.Request(f"{topic}?after={after}", headers={"aeg-sas-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            page = TopicPage.model_validate_json(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise AztrainError(f"cannot read events from {topic} ({exc}); is `aztrain dev` running?") from None
    except ValidationError as exc:
        raise AztrainError(f"{topic} did not answer with a page of events: {exc.errors()[0]['msg']}") from None
    return page.events, page.next


def _line(event: CloudEvent) -> str:
    return f"{event.time[:23]}  {event.type:<32} {event.subject}  {event.id}  {event.correlationid}"

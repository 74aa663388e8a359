"""The outbound events as a client reads them back from a topic: CloudEvents 1.0 envelopes (docs/events.md).

Lenient on purpose: a newer control plane may add attributes or data fields, and a reader must not break
on them; every field the CLI shows has a default, so an event of another type reads as well.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventData(BaseModel):
    """The `data` fields a client shows; each event type carries a subset of them (docs/events.md)."""

    model_config = ConfigDict(extra="allow")

    run_id: str | None = None
    job: str = ""
    state: str = ""
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    team: str = ""
    month: str = ""
    threshold_percent: int | float | None = None
    budget: int | float | None = None
    spent: int | float | None = None


class CloudEvent(BaseModel):
    """One event, with the attributes aztrain sets (`correlationid` is its extension attribute)."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    type: str = ""
    source: str = ""
    subject: str = ""
    time: str = ""
    correlationid: str = ""
    data: EventData = Field(default_factory=EventData)


class TopicPage(BaseModel):
    """What the local topic answers to `GET ?after=<n>`: the events it accepted since, and where to go on."""

    events: list[CloudEvent]
    next: int

"""Dead letters: events that can never succeed are recorded with the reason, then acknowledged.

Event Grid redelivers anything a handler raises on for 24 hours; for an event no retry can fix
(a wrong type, a subject that is not a blob, a payload without the fields it needs) that only
burns retries and hides the event in logs. The handler records it here instead (visible through
`GET /api/deadletters` and `aztrain deadletters`) and returns normally. A storage failure while
recording raises, so that event is retried like any other.
"""

from __future__ import annotations

import logging

from aztrain.domain.records import DeadLetter
from aztrain.service.usecases.context import Context

log = logging.getLogger(__name__)

#: Longest subject or event type kept: enough to recognise the event, bounded for a table property.
_MAX_TEXT = 1024


def record(ctx: Context, *, function: str, event_id: str, event_type: str, subject: str, reason: str) -> DeadLetter:
    """Record that `function` gave up on an event, and why; a redelivery of it changes nothing."""
    letter = DeadLetter(
        function=function,
        event_id=event_id[:_MAX_TEXT],
        event_type=event_type[:_MAX_TEXT],
        subject=subject[:_MAX_TEXT],
        reason=reason[:_MAX_TEXT],
        at=ctx.now(),
    )
    ctx.store.add_dead_letter(letter)
    log.warning("dead letter: %s gave up on event %r: %s", function, letter.event_id, reason)
    return letter

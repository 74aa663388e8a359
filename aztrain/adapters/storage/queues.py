"""`StepRequests` on Azure Queue Storage: one message per hint, as the Functions queue trigger reads it."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient


def message_for(run_id: str) -> str:
    """The message naming `run_id`: base64 text, which host.json's `messageEncoding: base64` decodes."""
    return base64.b64encode(run_id.encode()).decode()


class QueueStepRequests:
    """Sends each hint to one storage queue (`run-steps`; infra/main.bicep declares it)."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    def request(self, run_id: str) -> None:
        self._queue.send_message(message_for(run_id))

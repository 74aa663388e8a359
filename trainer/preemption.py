"""Preemption: a low-priority node is sent SIGTERM shortly before it is taken away."""

from __future__ import annotations

import signal
from types import FrameType

import torch

from trainer.distributed import Group


class Preemption:
    """Turns SIGTERM into a request to stop, which every rank acts on at the same step."""

    def __init__(self) -> None:
        self._requested = False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._requested = True  # acted on between steps: a half-done step cannot be checkpointed

    def agreed(self, group: Group) -> bool:
        """Whether any rank has been sent SIGTERM. A collective: every rank calls it at the same step."""
        requested = torch.tensor(int(self._requested))
        return bool(group.allreduce(requested, "max", name="preemption").item())

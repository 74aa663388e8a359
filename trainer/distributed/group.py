"""The interface a distribution implements: this process's rank among the job's, and their collectives."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")
Reduction = Literal["mean", "sum", "max"]


class Group(Protocol):
    """This process's place among the job's processes, and the collectives every rank calls together.

    Every collective is called by every rank at the same point, or the ranks wait for each other
    forever; `name` labels it for the library's own diagnostics (Horovod's timeline), where it has any.
    """

    @property
    def rank(self) -> int: ...

    @property
    def size(self) -> int: ...

    @property
    def local_rank(self) -> int:
        """The rank among this node's processes: which GPU to drive, and who fills the node's cache."""
        ...

    @property
    def local_size(self) -> int:
        """How many of the job's processes share this node."""
        ...

    def barrier(self) -> None: ...

    def allreduce(self, tensor: torch.Tensor, op: Reduction, *, name: str) -> torch.Tensor:
        """A new tensor: the ranks' tensors reduced elementwise."""
        ...

    def average_(self, tensors: Sequence[torch.Tensor], *, name: str) -> None:
        """Replace each tensor, in place, by its average over the ranks."""
        ...

    def allgather_object(self, value: T, *, name: str) -> list[T]:
        """Every rank's `value` (picklable), in rank order."""
        ...

    def broadcast_object(self, value: T, *, name: str) -> T:
        """Rank 0's `value` (picklable), on every rank."""
        ...

    def broadcast_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Make every rank's weights, buffers and optimizer state rank 0's."""
        ...

    def distribute(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *, accumulation: int, fp16: bool
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """The model to train through and the optimizer to step, averaging gradients over the ranks.

        Gradients are averaged once per optimizer step, after `accumulation` backward passes,
        sent as float16 when `fp16`. The model returned may wrap `model`; `model` itself stays
        the one to save and score.
        """
        ...

    def accumulating(self, network: nn.Module) -> AbstractContextManager[object]:
        """Where a backward pass that is not the last before a step runs: no gradient exchange yet."""
        ...

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """Take the optimizer step on the averaged gradients, through the loss scaler.

        The averaged gradients are identical on every rank, so the scaler's inf/NaN check
        agrees too, and all ranks skip or take the step together.
        """
        ...

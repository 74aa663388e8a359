"""The process group on Horovod (`horovodrun`, or `mpirun` under Azure ML's MpiDistribution)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, TypeVar

import horovod.torch as hvd
import torch
from torch import nn

from trainer.distributed.group import Reduction

T = TypeVar("T")
_OPS: dict[Reduction, Any] = {"mean": hvd.Average, "sum": hvd.Sum, "max": hvd.Max}


class HorovodGroup:
    """`hvd.init()` and Horovod's collectives; gradients averaged by its `DistributedOptimizer`."""

    def __init__(self) -> None:
        hvd.init()

    @property
    def rank(self) -> int:
        return int(hvd.rank())

    @property
    def size(self) -> int:
        return int(hvd.size())

    @property
    def local_rank(self) -> int:
        return int(hvd.local_rank())

    @property
    def local_size(self) -> int:
        return int(hvd.local_size())

    def barrier(self) -> None:
        hvd.barrier()

    def allreduce(self, tensor: torch.Tensor, op: Reduction, *, name: str) -> torch.Tensor:
        return hvd.allreduce(tensor, op=_OPS[op], name=name)  # type: ignore[no-any-return]

    def average_(self, tensors: Sequence[torch.Tensor], *, name: str) -> None:
        hvd.grouped_allreduce_(list(tensors), op=hvd.Average, name=name)

    def allgather_object(self, value: T, *, name: str) -> list[T]:
        return list(hvd.allgather_object(value, name=name))

    def broadcast_object(self, value: T, *, name: str) -> T:
        return hvd.broadcast_object(value, root_rank=0, name=name)  # type: ignore[no-any-return]

    def broadcast_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    def distribute(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *, accumulation: int, fp16: bool
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        distributed = hvd.DistributedOptimizer(
            optimizer,
            named_parameters=model.named_parameters(),
            compression=hvd.Compression.fp16 if fp16 else hvd.Compression.none,
            # Horovod counts the backward passes itself and allreduces after the last of them.
            backward_passes_per_step=accumulation,
            # One allreduce per step for all gradients: the model is small, so each collective costs
            # mostly latency, and the per-cycle fusion would split one backward pass into several.
            groups=1,
        )
        return model, distributed

    def accumulating(self, network: nn.Module) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()  # the DistributedOptimizer waits for its backward_passes_per_step

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        # Wait for Horovod's allreduce first, so the scaler checks the averaged gradients.
        optimizer.synchronize()  # type: ignore[attr-defined]  # DistributedOptimizer's
        with optimizer.skip_synchronize():  # type: ignore[attr-defined]
            scaler.step(optimizer)

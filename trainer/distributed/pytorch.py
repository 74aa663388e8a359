"""The process group on `torch.distributed`: DistributedDataParallel under `torchrun` or Azure ML's PyTorchDistribution.

The launcher sets `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK` and `LOCAL_RANK` (torchrun
and Azure ML both do), and `init_process_group` reads them (`env://`). Tensors on the CPU go over
Gloo and tensors on a GPU over NCCL (one group with both backends), so the CPU-side collectives
(the preemption flag, the test counts, pickled objects) work beside the GPU's gradients.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import HashStore  # type: ignore[attr-defined]  # public API, re-exported without __all__
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from trainer.distributed.group import Reduction

T = TypeVar("T")
_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}  # Gloo has no AVG


class PyTorchGroup:
    """`init_process_group` from the launcher's environment; without a launcher, a group of one."""

    def __init__(self) -> None:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():  # else `main()` runs again in one process (the benchmark): same group
            if "WORLD_SIZE" in os.environ:
                dist.init_process_group(backend)
            else:  # run as a plain process: a group of one, which needs no rendezvous
                dist.init_process_group(backend, store=HashStore(), rank=0, world_size=1)
            atexit.register(dist.destroy_process_group)
        self._rank, self._size = dist.get_rank(), dist.get_world_size()
        self._local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        # Counted, not read from LOCAL_WORLD_SIZE: torchrun sets that, Azure ML's documented variables do not.
        host = socket.gethostname()
        self._local_size = sum(other == host for other in self.allgather_object(host, name="hosts"))

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return self._size

    @property
    def local_rank(self) -> int:
        return self._local_rank

    @property
    def local_size(self) -> int:
        return self._local_size

    def barrier(self) -> None:
        dist.barrier()

    def allreduce(self, tensor: torch.Tensor, op: Reduction, *, name: str) -> torch.Tensor:
        reduced = tensor.clone()
        dist.all_reduce(reduced, op=_OPS[op])
        return reduced.div_(self._size) if op == "mean" else reduced

    def average_(self, tensors: Sequence[torch.Tensor], *, name: str) -> None:
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self._size)

    def allgather_object(self, value: T, *, name: str) -> list[T]:
        gathered: list[Any] = [None] * self._size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_object(self, value: T, *, name: str) -> T:
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[no-any-return]

    def broadcast_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for tensor in model.state_dict().values():  # the module's own tensors: broadcast in place
            dist.broadcast(tensor, src=0)
        # Pickled from the CPU: a GPU tensor would be unpickled onto rank 0's device on every rank.
        state = self.broadcast_object(_on_cpu(optimizer.state_dict()) if self._rank == 0 else {}, name="optimizer")
        if self._rank != 0:
            optimizer.load_state_dict(state)  # moves each state tensor to its parameter's device

    def distribute(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *, accumulation: int, fp16: bool
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        if self._size == 1:  # nothing to average (as Horovod's optimizer registers no hooks at size 1)
            return model, optimizer
        network = DistributedDataParallel(
            model,
            device_ids=[self._local_rank] if torch.cuda.is_available() else None,
            # Buffers (batch-norm statistics) are averaged at the end of each epoch, as under Horovod,
            # not overwritten by rank 0's before every forward pass.
            forward_sync_buffers=False,
        )
        if fp16:
            network.register_comm_hook(None, default_hooks.fp16_compress_hook)
        return network, optimizer

    def accumulating(self, network: nn.Module) -> contextlib.AbstractContextManager[object]:
        # DDP allreduces in every backward pass unless told not to; the last pass before a step syncs.
        return network.no_sync() if isinstance(network, DistributedDataParallel) else contextlib.nullcontext()

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        scaler.step(optimizer)  # DDP averaged the gradients during the last backward pass


def _on_cpu(value: Any) -> Any:
    """`value` with every tensor in it (in dicts and lists, however deep) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _on_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_on_cpu(item) for item in value)
    return value

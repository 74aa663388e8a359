"""Feeding the model: each rank's shard of the training set, in batches, on the training device."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from trainer.data import Split

Batch = tuple[torch.Tensor, torch.Tensor]


def shard_order(size: int, *, epoch: int, seed: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's sample indices for `epoch` (torch's DistributedSampler, as a tensor).

    Every rank shuffles identically (same seed and epoch) and takes every world_size-th
    index from its rank on, so the shards are disjoint and cover the set. The order is
    padded by repeating its head until the shards are the same size: every rank then
    takes the same number of steps, as Horovod's allreduce in every step needs.
    """
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    order = torch.randperm(size, generator=generator)
    padded = math.ceil(size / world_size) * world_size
    order = torch.cat([order, order[: padded - size]])
    return order[rank::world_size]


def batch_count(samples: int, batch_size: int) -> int:
    """How many batches `batches` yields for `samples` indices."""
    return math.ceil(samples / batch_size)


def batches(
    data: Split, order: torch.Tensor, *, batch_size: int, device: torch.device, skip: int = 0
) -> Iterator[Batch]:
    """`data[order]` in batches from batch `skip` on, on `device`, with pixels as float32 in [0, 1].

    Batches are gathered from memory by index; for a GPU they go through page-locked
    memory, so the copy to the device runs asynchronously, behind the previous step.
    """
    pin = device.type == "cuda"
    for start in range(skip * batch_size, len(order), batch_size):
        index = order[start : start + batch_size]
        images, labels = data.images[index], data.labels[index]
        if pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        # Scaling on the device: uint8 crosses the bus, a quarter of the bytes of float32.
        yield images.to(device, non_blocking=True).float().div_(255), labels.to(device, non_blocking=True)

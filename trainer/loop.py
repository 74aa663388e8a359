"""The training loop: epochs of synchronised steps on every rank, stoppable and resumable at any optimizer step."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainer.args import TrainArgs
from trainer.data import Splits
from trainer.distributed import Group
from trainer.loader import batch_count, batches, shard_order

# Optimizer steps between checks for a preemption: each check is a small allreduce, and a
# preempted node has about 30 seconds, far more than ten steps of any model this trains.
POLL_STEPS = 10
_EVAL_BATCH = 1024  # scoring keeps no activations for a backward pass: larger batches are fine


@dataclass
class Progress:
    """How far training has got: what a checkpoint restores, identically on every rank."""

    epoch: int = 0  # epochs completed
    step: int = 0  # batches of the next epoch already trained
    loss_sum: float = 0.0  # their summed training loss (the ranks' average)
    seconds: float = 0.0  # and their training time
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per completed epoch


def learning_rate(args: TrainArgs, *, world_size: int, step: int, steps_per_epoch: int) -> float:
    """The rate for optimizer step `step` (counted from 0 over the whole run).

    The effective batch is world_size times larger, so the rate is too (Goyal et al.,
    Horovod's recipe); it ramps up linearly from the single-process rate over the
    warm-up epochs, because a large rate straight away can diverge.
    """
    warmup_steps = args.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return args.lr * (1 + (world_size - 1) * step / warmup_steps)
    total = args.epochs * steps_per_epoch
    decay = 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total - warmup_steps)))
    return args.lr * world_size * decay


@dataclass
class Training:
    """The model, the network and optimizer that average its gradients, loss scaler and data, on this rank's device.

    `network` is what training runs through (the model itself, or a wrapper that averages
    gradients); `model` is what is scored, checkpointed and saved.
    """

    args: TrainArgs
    splits: Splits
    device: torch.device
    group: Group
    model: nn.Module
    network: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    def run_epoch(self, progress: Progress, should_stop: Callable[[], bool]) -> bool:
        """Train epoch `progress.epoch + 1` from batch `progress.step` on, keeping `progress` current.

        Every `POLL_STEPS` optimizer steps it asks `should_stop` (a collective); if that says
        stop it returns False with `progress` at that step. True: the epoch is complete,
        scored and in `progress.history`.
        """
        args, group, size = self.args, self.group, self.group.size
        epoch = progress.epoch + 1
        order = shard_order(len(self.splits.train), epoch=epoch, seed=args.seed, rank=group.rank, world_size=size)
        per_epoch = batch_count(len(order), args.batch_size)
        accumulation = args.gradient_accumulation_steps
        steps_per_epoch = math.ceil(per_epoch / accumulation)
        first_step = progress.epoch * steps_per_epoch
        started = time.perf_counter()
        # Summed on the device: reading each loss back would stall the GPU's queue every step.
        loss_sum = torch.tensor(progress.loss_sum, device=self.device)
        self.network.train()
        data = batches(self.splits.train, order, batch_size=args.batch_size, device=self.device, skip=progress.step)
        for index, (images, labels) in enumerate(data, start=progress.step):
            # The gradients are averaged once they have been summed over `accumulation` passes.
            last_pass = (index + 1) % accumulation == 0 or index + 1 == per_epoch
            with nullcontext() if last_pass else group.accumulating(self.network):
                with self._autocast():
                    loss = F.cross_entropy(self.network(images), labels)
                loss_sum.add_(loss.detach(), alpha=len(labels))
                scaled = self.scaler.scale(loss / accumulation)
                scaled.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            if not last_pass:
                continue
            step = index // accumulation  # in this epoch, from 0
            self._step(learning_rate(args, world_size=size, step=first_step + step, steps_per_epoch=steps_per_epoch))
            if (step + 1) % POLL_STEPS == 0 and step + 1 < steps_per_epoch and should_stop():
                progress.step = index + 1
                # Each rank resumes from the same (averaged) sum: the epoch's mean comes out the same.
                progress.loss_sum = float(group.allreduce(loss_sum, "mean", name="partial_loss"))
                progress.seconds += time.perf_counter() - started
                return False
        # The shards are the same size, so the mean of the ranks' means is the mean over all samples.
        mean_loss = float(group.allreduce(loss_sum / len(order), "mean", name="train_loss"))  # waits for the GPU
        seconds = progress.seconds + time.perf_counter() - started
        self._average_buffers()
        progress.history.append(
            {
                "epoch": epoch,
                "loss": mean_loss,
                "accuracy": self.evaluate(),
                "lr": learning_rate(
                    args, world_size=size, step=first_step + steps_per_epoch - 1, steps_per_epoch=steps_per_epoch
                ),
                "samples_per_second": len(order) * size / seconds,  # all ranks, padding included: the work done
                "epoch_seconds": seconds,
            }
        )
        progress.epoch, progress.step, progress.loss_sum, progress.seconds = epoch, 0, 0.0, 0.0
        return True

    def evaluate(self) -> float:
        """Accuracy on the whole test set: each rank scores its share, then the counts are summed."""
        test, rank, size = self.splits.test, self.group.rank, self.group.size
        share = torch.arange(rank, len(test), size)  # no padding: each image is scored exactly once
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.model.eval()
        with torch.no_grad(), self._autocast():
            for images, labels in batches(test, share, batch_size=_EVAL_BATCH, device=self.device):
                correct += (self.model(images).argmax(dim=1) == labels).sum()
        counts = torch.tensor([float(correct), len(share)], dtype=torch.float64)
        # Summed counts, not averaged accuracies: the ranks' shares can differ in size by one.
        counts = self.group.allreduce(counts, "sum", name="test_counts")
        return float(counts[0] / counts[1])

    def state(self, progress: Progress) -> dict[str, Any]:
        """Everything a checkpoint needs to continue exactly here (rank 0's view; the ranks agree)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": asdict(progress),
            "layout": self._layout(),
            "rng": _rng_state(self.device),
        }

    def restore(self, state: dict[str, Any]) -> Progress:
        """Load a checkpoint's `state` (on rank 0; `broadcast` then shares it) and return its progress."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scaler"] and self.scaler.is_enabled():  # a run may turn mixed precision on or off
            self.scaler.load_state_dict(state["scaler"])
        progress = Progress(**state["progress"])
        if state["layout"] != self._layout():
            # The partial epoch's batches were cut for another world size or batch: redo that epoch whole.
            progress.step, progress.loss_sum, progress.seconds = 0, 0.0, 0.0
        return progress

    def broadcast(self, progress: Progress, rng: dict[str, torch.Tensor] | None) -> Progress:
        """Make every rank start where rank 0 is: weights, optimizer, scaler, progress and random state."""
        self.group.broadcast_state(self.model, self.optimizer)
        shared = self.group.broadcast_object((progress, self.scaler.state_dict(), rng), name="resume_state")
        progress, scaler, rng = shared
        if scaler:
            self.scaler.load_state_dict(scaler)
        if rng is not None:
            torch.set_rng_state(rng["cpu"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"])
        return progress

    def _step(self, lr: float) -> None:
        for params in self.optimizer.param_groups:
            params["lr"] = lr
        # The scaler checks the averaged gradients for inf/NaN, which are identical on every
        # rank: all ranks then skip or take the step together.
        self.group.step(self.optimizer, self.scaler)
        self.scaler.update()
        self.optimizer.zero_grad()

    def _autocast(self) -> AbstractContextManager[None]:
        # float16 on a GPU (loss-scaled); a CPU has bfloat16, which needs no scaling.
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.args.mixed_precision)

    def _average_buffers(self) -> None:
        """Average the batch norms' running statistics across ranks.

        The ranks average gradients, not buffers: without this each rank would score, and
        rank 0 save, statistics of its own shard only.
        """
        statistics = [buffer for buffer in self.model.buffers() if buffer.is_floating_point()]
        self.group.average_(statistics, name="batch_norm_statistics")

    def _layout(self) -> dict[str, int]:
        """What decides how an epoch is cut into batches: a partial epoch resumes only under the same."""
        return {
            "world_size": self.group.size,
            "batch_size": self.args.batch_size,
            "gradient_accumulation_steps": self.args.gradient_accumulation_steps,
        }


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state

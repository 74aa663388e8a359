"""Train the digits classifier with Horovod.

    horovodrun --gloo -np N -H localhost:N python -m trainer.train --data-dir DIR --output-dir DIR [--args-json JSON]

One process per slot; run without horovodrun it trains as a single process.
`--args-json` holds the manifest's `trainer.args` (see `trainer.args.TrainArgs`).
Rank 0 prints one line per epoch, `epoch 1/5 loss=0.1234 accuracy=0.9650`, and writes
`model.pt` and then `metrics.json` into the output folder.

Exit codes: 0 trained; 2 invalid arguments or data, with one line on stderr starting
"error: ". Anything else is a crash. (`horovodrun` itself exits 1 when any process fails.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import horovod.torch as hvd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainer.args import ArgsError, TrainArgs, parse_args
from trainer.data import IMAGE_SHAPE, NUM_CLASSES, Batch, DataError, Splits, eval_shard, load_dataset, train_shard
from trainer.model import build_model

EXIT_INVALID = 2


@dataclass(frozen=True)
class Result:
    """What training produced, as every rank sees it (the metrics are already averaged across ranks)."""

    model: nn.Module
    loss: float
    accuracy: float
    samples_per_second: float


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, train and (on rank 0) save; returns the exit code."""
    cli = _parse_cli(argv)
    hvd.init()
    try:
        args = parse_args(_decode(cli.args_json))
        splits = load_dataset(cli.data_dir)
    except (ArgsError, DataError) as exc:
        if hvd.rank() == 0:  # every rank sees the same inputs; one report is enough
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INVALID
    result = train(args, splits)
    if hvd.rank() == 0:
        _save(cli.output_dir, args, result)
    return 0


def train(args: TrainArgs, splits: Splits) -> Result:
    """Train on this rank's shard, in step with the other ranks, scoring the test set after each epoch."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the processes share the machine's cores; more threads each only contend
    rank, size = hvd.rank(), hvd.size()
    loader, sampler = train_shard(splits.train, batch_size=args.batch_size, rank=rank, world_size=size, seed=args.seed)
    test = eval_shard(splits.test, rank=rank, world_size=size)

    model = build_model()
    # The effective batch is size * batch_size, so the learning rate scales with it (Horovod's recipe).
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr * size, momentum=args.momentum)
    # Every rank starts from rank 0's weights and optimizer state, so they stay identical.
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())

    loss = accuracy = 0.0
    train_seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        started = time.perf_counter()
        loss = _train_epoch(model, loader, optimizer)
        train_seconds += time.perf_counter() - started
        _average_buffers(model)
        accuracy = _evaluate(model, test)
        if rank == 0:
            print(f"epoch {epoch}/{args.epochs} loss={loss:.4f} accuracy={accuracy:.4f}", flush=True)
    samples = args.epochs * len(sampler) * size  # all ranks, padding included: that is the work done
    return Result(model=model, loss=loss, accuracy=accuracy, samples_per_second=samples / train_seconds)


def _train_epoch(model: nn.Module, loader: DataLoader[Batch], optimizer: torch.optim.Optimizer) -> float:
    """One pass over this rank's shard; returns the mean training loss across all ranks."""
    model.train()
    total, count = 0.0, 0
    for images, labels in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        optimizer.step()  # Horovod averages the gradients across ranks here
        total += loss.item() * len(labels)
        count += len(labels)
    # The shards are the same size, so the mean of the ranks' means is the mean over all samples.
    return float(hvd.allreduce(torch.tensor(total / count), op=hvd.Average, name="train_loss"))


def _average_buffers(model: nn.Module) -> None:
    """Average the batch norms' running statistics across ranks.

    Horovod averages gradients, not buffers: without this each rank would evaluate, and
    rank 0 save, statistics of its own shard only.
    """
    statistics = [buffer for buffer in model.buffers() if buffer.is_floating_point()]
    hvd.grouped_allreduce_(statistics, op=hvd.Average, name="batch_norm_statistics")


def _evaluate(model: nn.Module, test: TensorDataset) -> float:
    """Accuracy on the whole test set: each rank scores its share, then the counts are summed."""
    model.eval()
    images, labels = test.tensors
    with torch.no_grad():
        correct = (model(images).argmax(dim=1) == labels).sum().item()
    # Summed counts, not averaged accuracies: the ranks' shares can differ in size by one.
    counts = hvd.allreduce(torch.tensor([correct, len(labels)], dtype=torch.float64), op=hvd.Sum, name="test_counts")
    return float(counts[0] / counts[1])


def _save(output_dir: Path, args: TrainArgs, result: Result) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": result.model.state_dict(),
        "classes": list(range(NUM_CLASSES)),
        "input_shape": list(IMAGE_SHAPE),
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    _write_atomic(output_dir / "model.pt", buffer.getvalue())
    metrics = {
        "accuracy": result.accuracy,
        "loss": result.loss,
        "epochs": args.epochs,
        "world_size": hvd.size(),
        "samples_per_second": round(result.samples_per_second, 1),
    }
    # Written last: a metrics.json means the model beside it is complete.
    _write_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers (and an upload racing a crash) see the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _decode(args_json: str) -> Any:
    try:
        raw = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise ArgsError([f"trainer.args: --args-json is not valid JSON: {exc}"]) from exc
    return raw  # any JSON value: parse_args says so if it is not an object


def _parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description="Train the digits classifier.")
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding digits.npz, at any depth")
    parser.add_argument("--output-dir", type=Path, required=True, help="where rank 0 writes model.pt, metrics.json")
    parser.add_argument("--args-json", default="{}", help="the trainer arguments as a JSON object")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())

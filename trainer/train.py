"""Train an image classifier, data-parallel over Horovod or PyTorch DDP.

    horovodrun --gloo -np N -H localhost:N python -m trainer.train --data-dir DIR --output-dir DIR [--args-json JSON]
        [--distribution horovod|pytorch] [--checkpoint-dir DIR] [--cache-dir DIR] [--snapshot-id ID]
        [--snapshot-file FILE] [--manifest-hash HASH]
    torchrun --standalone --nproc-per-node N -m trainer.train --distribution pytorch ...

One process per slot (per GPU), under the launcher of its `--distribution` (default horovod: see
`trainer.distributed`); run without a launcher it trains as a single process.
`--args-json` holds the manifest's `trainer.args` (see `trainer.args.TrainArgs`). Rank 0
prints one line per epoch, `epoch 1/5 loss=0.1234 accuracy=0.9650 samples/s=...`, keeps
a checkpoint after every epoch and writes `metrics.jsonl`, then `model.pt` and last
`metrics.json` into the output folder. A run finds the newest checkpoint in its
checkpoint folder and continues from there.

Exit codes: 0 trained; 2 invalid arguments, data or checkpoint, with one line on stderr
starting "error: "; 75 preempted: SIGTERM arrived, a checkpoint was written, and running
again with the same checkpoint folder resumes. Anything else is a crash. (`horovodrun` and
`torchrun` exit 1 when any process fails, and print each one's code: "Exit code: N", "exitcode: N".)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from trainer.args import ArgsError, TrainArgs, parse_args
from trainer.cache import DataCache
from trainer.checkpoint import CheckpointError, load_newest, save_checkpoint
from trainer.data import Loaded, Splits, load, split
from trainer.dataset import DataError, Dataset
from trainer.distributed import DEFAULT, NAMES, Group, connect
from trainer.exit_codes import EXIT_INVALID, EXIT_PREEMPTED
from trainer.loop import Progress, Training
from trainer.model import build_model, state_digest
from trainer.outputs import save_model, write_data_files, write_history, write_metrics
from trainer.preemption import Preemption
from trainer.snapshot import pin
from trainer.tracking import Tracker, start_tracking

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "aztrain-cache"

T = TypeVar("T")


class _Invalid(ValueError):
    """Bad data or checkpoint found on some rank: every rank stops with its message."""


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, train and (on rank 0) save; returns the exit code."""
    cli = _parse_cli(argv)
    preemption = Preemption()  # first: a SIGTERM during start-up is then honoured at the first check
    group = connect(cli.distribution)
    try:
        args = parse_args(_decode(cli.args_json))
        device = _device(group)
        loaded, splits = _load_data(cli, args, group)
        training = _build(args, splits, loaded.dataset, device, group)
        progress, resumed_from = _resume(cli.checkpoint_dir, training, loaded.dataset)
    except (ArgsError, _Invalid) as exc:
        if group.rank == 0:  # every rank stops with the same problem; one report is enough
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INVALID
    reporter = _Reporter(cli, args, loaded, group) if group.rank == 0 else None
    if reporter is not None:
        reporter.start(device, progress, resumed_from)
    if not _fit(training, progress, preemption, reporter):
        return EXIT_PREEMPTED
    digests = group.allgather_object(state_digest(training.model.state_dict()), name="parameter_digests")
    if reporter is not None:
        reporter.finish(training, progress, digests)
    return 0


def _fit(
    training: Training,
    progress: Progress,
    preemption: Preemption,
    reporter: _Reporter | None,
) -> bool:
    """Train the remaining epochs, checkpointing after each. False: preempted, with a checkpoint written."""

    def agreed() -> bool:
        return preemption.agreed(training.group)

    while progress.epoch < training.args.epochs:
        completed = training.run_epoch(progress, agreed)
        if reporter is not None:
            reporter.checkpoint(training, progress)
            if completed:
                reporter.epoch(progress)
        # `completed` is the same on every rank, so either all ranks take the collective or none does.
        if not completed or agreed():
            # Rank 0's checkpoint is on disk before any process exits (a launcher then kills the rest).
            training.group.barrier()
            if reporter is not None:
                reporter.preempted(progress)
            return False
    return True


def _load_data(cli: argparse.Namespace, args: TrainArgs, group: Group) -> tuple[Loaded, Splits]:
    cache = DataCache(cli.cache_dir)

    def load_and_split() -> tuple[Loaded, Splits]:
        if cli.snapshot_file is None:
            loaded = load(cli.data_dir, cache=cache, snapshot_id=cli.snapshot_id, image_size=args.image_size)
        else:
            loaded = _load_pinned(cli, cache, args.image_size)
        return loaded, split(loaded.dataset)

    # One process per node decodes and fills the node's cache; the others then read it from there.
    first = _agreed(group, load_and_split if group.local_rank == 0 else lambda: None, name="data")
    return _agreed(group, lambda: first if first is not None else load_and_split(), name="data_local")


def _load_pinned(cli: argparse.Namespace, cache: DataCache, image_size: int) -> Loaded:
    """The data set made of exactly the snapshot's files (see `trainer.snapshot`)."""
    with tempfile.TemporaryDirectory(prefix="aztrain-snapshot-") as view:
        pinned = pin(cli.data_dir, cli.snapshot_file, Path(view))
        if cli.snapshot_id not in (None, pinned.snapshot_id):
            raise DataError(
                f"--snapshot-id {cli.snapshot_id} differs from {cli.snapshot_file}'s id {pinned.snapshot_id}"
            )
        loaded = load(pinned.folder, cache=cache, snapshot_id=pinned.snapshot_id, image_size=image_size)
    note = f"{pinned.files} file(s) of snapshot {pinned.snapshot_id}, {pinned.ignored} other(s) on the mount ignored"
    return replace(loaded, note=f"{loaded.note}; {note}")


def _build(args: TrainArgs, splits: Splits, dataset: Dataset, device: torch.device, group: Group) -> Training:
    torch.manual_seed(args.seed)
    model = build_model(dataset.input_shape, len(dataset.classes)).to(device)
    network, optimizer = group.distribute(
        model,
        torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum),
        accumulation=args.gradient_accumulation_steps,
        fp16=args.fp16_allreduce,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=args.mixed_precision and device.type == "cuda")
    return Training(
        args=args,
        splits=splits,
        device=device,
        group=group,
        model=model,
        network=network,
        optimizer=optimizer,
        scaler=scaler,
    )


def _resume(folder: Path, training: Training, dataset: Dataset) -> tuple[Progress, Path | None]:
    """Rank 0 loads the newest checkpoint, if any, and every rank starts from its state; rank 0 gets its path."""

    def read() -> tuple[Path, dict[str, Any]] | None:
        found = load_newest(folder) if training.group.rank == 0 else None
        if found is not None:
            _check_same_data(*found, dataset)
        return found

    found = _agreed(training.group, read, name="checkpoint")
    if found is None:
        return training.broadcast(Progress(), rng=None), None
    path, state = found
    return training.broadcast(training.restore(state), rng=state["rng"]), path


def _check_same_data(path: Path, state: dict[str, Any], dataset: Dataset) -> None:
    identity = _data_identity(dataset)
    stored = {key: state.get(key) for key in identity}
    if stored != identity:
        raise CheckpointError(
            f"checkpoint {path} was trained on other data (classes {stored['classes']}, input shape "
            f"{stored['input_shape']}); this data has {identity['classes']}, {identity['input_shape']}: "
            "give it an empty --checkpoint-dir"
        )


def _agreed(group: Group, action: Callable[[], T], *, name: str) -> T:
    """Run `action` on every rank; if it finds bad input on any rank, raise `_Invalid` on all of them.

    Without this a rank with a problem would exit while the others wait for it in the
    next collective, forever.
    """
    try:
        result, problem = action(), None
    except (DataError, CheckpointError) as exc:
        result, problem = None, str(exc)
    found = [p for p in group.allgather_object(problem, name=name) if p is not None]
    if found:
        raise _Invalid(found[0])
    return result  # type: ignore[return-value]  # no problem: action returned


def _device(group: Group) -> torch.device:
    # The node's cores are shared by its processes; more threads than their share only contend.
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // group.local_size))
    if not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(group.local_rank)  # one GPU per process: local rank i drives GPU i
    torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest convolution kernels once
    return torch.device("cuda", group.local_rank)


def _data_identity(dataset: Dataset) -> dict[str, Any]:
    """What a checkpoint must share with the data to be resumed on it."""
    return {"classes": list(dataset.classes), "input_shape": list(dataset.input_shape)}


class _Reporter:
    """Rank 0's reporting: the log, metrics.jsonl, MLflow, and at the end model.pt and metrics.json."""

    def __init__(self, cli: argparse.Namespace, args: TrainArgs, loaded: Loaded, group: Group) -> None:
        self.cli, self.args, self.loaded, self.size = cli, args, loaded, group.size
        self.tracker: Tracker | None = start_tracking()
        self.lineage = {"data_snapshot": cli.snapshot_id, "manifest_hash": cli.manifest_hash}
        self.last_checkpoint: Path | None = None

    def start(self, device: torch.device, progress: Progress, resumed_from: Path | None) -> None:
        dataset, args, size = self.loaded.dataset, self.args, self.size
        channels, height, width = dataset.input_shape
        print(
            f"data: {len(dataset.labels)} images, {len(dataset.classes)} classes, {dataset.source} "
            f"{channels}x{height}x{width}; {self.loaded.note}; {_sources(dataset)}",
            flush=True,
        )
        # Before training: what the run consumed is on record even if it fails or is preempted.
        write_data_files(self.cli.output_dir, list(dataset.files), _samples(dataset))
        print(
            f"training: {size} process(es) on {device.type}, batch {args.batch_size} x "
            f"{args.gradient_accumulation_steps} pass(es) x {size}, lr {args.lr:g} -> {args.lr * size:g} "
            f"over {args.warmup_epochs} warm-up epoch(s)",
            flush=True,
        )
        if resumed_from is not None:
            print(f"resuming from {resumed_from} at epoch {progress.epoch + 1}, batch {progress.step}", flush=True)
        elif self.tracker is not None:  # a resumed run logged its parameters the first time
            self.tracker.log_params({**asdict(args), "world_size": size, **self.lineage})

    def epoch(self, progress: Progress) -> None:
        entry = progress.history[-1]
        write_history(self.cli.output_dir, progress.history)
        print(
            f"epoch {progress.epoch}/{self.args.epochs} loss={entry['loss']:.4f} accuracy={entry['accuracy']:.4f} "
            f"samples/s={entry['samples_per_second']:.0f} seconds={entry['epoch_seconds']:.2f}",
            flush=True,
        )
        if self.tracker is not None:
            self.tracker.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, step=progress.epoch)

    def checkpoint(self, training: Training, progress: Progress) -> None:
        state = {**training.state(progress), **_data_identity(self.loaded.dataset)}
        self.last_checkpoint = save_checkpoint(self.cli.checkpoint_dir, state, epoch=progress.epoch, step=progress.step)

    def preempted(self, progress: Progress) -> None:
        print(
            f"preempted: SIGTERM; checkpoint {self.last_checkpoint} holds epoch {progress.epoch} and {progress.step} "
            f"batch(es) of the next; exiting with {EXIT_PREEMPTED}",
            file=sys.stderr,
            flush=True,
        )

    def finish(self, training: Training, progress: Progress, digests: list[str]) -> None:
        dataset, last = self.loaded.dataset, progress.history[-1]
        samples = sum(e["samples_per_second"] * e["epoch_seconds"] for e in progress.history)
        metrics = {
            "accuracy": last["accuracy"],
            "loss": last["loss"],
            "epochs": progress.epoch,
            "world_size": self.size,
            "samples_per_second": round(samples / sum(e["epoch_seconds"] for e in progress.history), 1),
            "samples": len(dataset.labels),
            "data_sources": _samples(dataset),
            "data_from_cache": self.loaded.from_cache,
            "data_seconds": round(self.loaded.seconds, 3),
            "parameter_digest": digests[0],
            "ranks_in_sync": len(set(digests)) == 1,  # the averaged gradients kept every rank's copy identical
            **self.lineage,
        }
        save_model(
            self.cli.output_dir,
            training.model.state_dict(),
            {**_data_identity(dataset), "data_format": dataset.source, "args": asdict(self.args), **self.lineage},
        )
        write_metrics(self.cli.output_dir, metrics)
        if self.tracker is not None:
            self.tracker.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})


def _samples(dataset: Dataset) -> dict[str, int]:
    """Samples per file (or image folder) read, relative to the data folder."""
    return {part.path: part.samples for part in dataset.parts}


_LOGGED_SOURCES = 10  # a data set of thousands of files is summed up, not listed, in the log


def _sources(dataset: Dataset) -> str:
    """`read 2 source(s): digits.npz (1797), batch-2/digits.npz (3594)`, the first few of many."""
    shown = ", ".join(f"{part.path} ({part.samples})" for part in dataset.parts[:_LOGGED_SOURCES])
    more = len(dataset.parts) - _LOGGED_SOURCES
    return f"read {len(dataset.parts)} source(s): {shown}" + (f" and {more} more" if more > 0 else "")


def _decode(args_json: str) -> Any:
    try:
        raw = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise ArgsError([("trainer.args", f"--args-json is not valid JSON: {exc}")]) from exc
    return raw  # any JSON value: parse_args says so if it is not an object


def _parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description="Train an image classifier.")
    parser.add_argument("--data-dir", type=Path, required=True, help="digits.npz, or one folder per class of images")
    parser.add_argument("--output-dir", type=Path, required=True, help="where rank 0 writes model.pt and metrics")
    parser.add_argument("--args-json", default="{}", help="the trainer arguments as a JSON object")
    parser.add_argument(
        "--distribution",
        choices=NAMES,
        default=DEFAULT,
        help=f"how the processes average gradients, matching their launcher (default: {DEFAULT})",
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="where checkpoints are kept and resumed from (default: OUTPUT_DIR/checkpoints)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"node-local decoded-data cache (default: {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument("--snapshot-id", help="the data snapshot's id: the cache key, and recorded in model.pt")
    parser.add_argument(
        "--snapshot-file",
        type=Path,
        help="the data snapshot's blob list (JSON): read exactly those files under --data-dir, nothing else",
    )
    parser.add_argument("--manifest-hash", help="the job manifest's hash, recorded in model.pt and metrics.json")
    cli = parser.parse_args(argv)
    if cli.checkpoint_dir is None:
        cli.checkpoint_dir = cli.output_dir / "checkpoints"
    return cli


if __name__ == "__main__":
    sys.exit(main())

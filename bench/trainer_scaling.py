"""Trainer benchmark: Horovod and PyTorch DDP scaling side by side, the node-local cache, trainer against plain loop.

    python bench/trainer_scaling.py [--epochs N] [--batch-sizes B,B] [--distributions horovod,pytorch]
        [--sections cpu_scaling,gpu_scaling,cache,trainer_vs_plain]

Prints one JSON object:

- `cpu_scaling`: for each distribution, launched as the local backend launches it
  (`horovodrun --gloo` or `torchrun`), samples/s of 1 process (pinned to one core) and of 2
  (two cores) on the digits, and the efficiency samples/s(2) / (2 x samples/s(1)), at each
  per-process batch size: the default 64, where the allreduce's latency weighs, and 512,
  where compute dominates. For context, also one process given every core.
- `gpu_scaling` (only where there are GPUs): the same, 1 -> N processes, one GPU each, NCCL.
- `cache`: loading a generated image folder the first time (decode with Pillow, write
  the cache) against every later time (read the cache), and the speedup.
- `trainer_vs_plain`: the trainer's training step at world size 1 (its `main()`, in this
  process, as a PyTorch group of one: nothing to average, so no DDP wrapper, as Horovod's
  optimizer registers no hooks at size 1) against a plain PyTorch loop over the same model
  and data, on the GPU when there is one, else the CPU; the ratio of their samples/s.

A distribution whose library is missing (Horovod, on a machine that never built it) is
reported as skipped. Throughputs are medians over the epochs after the first (warm-up) epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the trainer package lives beside bench/

from aztrain.adapters.compute.local.launchers import LAUNCHERS  # noqa: E402  # after the path is set

SECTIONS = ("cpu_scaling", "gpu_scaling", "cache", "trainer_vs_plain")
_CACHE_IMAGES = 3000
_COMPARE_ROUNDS = 4
# The digits repeated: enough steps per epoch at large batches for an epoch's time to mean something.
_DIGITS_REPEAT = 8
_IMAGE_SIZE = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per measured run (the first is warm-up)")
    parser.add_argument("--batch-sizes", default="64,512", help="per-process batch sizes for scaling, comma-separated")
    parser.add_argument("--distributions", default="horovod,pytorch", help="for scaling, comma-separated")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    cli = parser.parse_args(argv)
    gpus = torch.cuda.device_count()
    report: dict[str, Any] = {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
            "gpus": [torch.cuda.get_device_name(i) for i in range(gpus)],
            "torch": torch.__version__,
            "horovod": _horovod_version(),
        }
    }
    batch_sizes = [int(b) for b in cli.batch_sizes.split(",")]
    distributions = [d for d in cli.distributions.split(",") if d]
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as tmp:
        work = Path(tmp)
        for section in cli.sections.split(","):
            if section == "cpu_scaling":
                report[section] = scaling(work, distributions, epochs=cli.epochs, batch_sizes=batch_sizes, gpus=0)
            elif section == "gpu_scaling":
                if gpus:
                    report[section] = scaling(
                        work, distributions, epochs=cli.epochs, batch_sizes=batch_sizes, gpus=gpus
                    )
            elif section == "cache":
                report[section] = cache_speedup(work)
            elif section == "trainer_vs_plain":
                report[section] = trainer_vs_plain(work, epochs=cli.epochs)
            else:
                parser.error(f"unknown section {section!r}")
    print(json.dumps(report, indent=2))
    return 0


def scaling(work: Path, distributions: list[str], *, epochs: int, batch_sizes: list[int], gpus: int) -> dict[str, Any]:
    """Per distribution and batch size: 1 process against 2 on the CPU (1 and 2 cores), or 1 against `gpus` GPUs.

    The runs of one batch size alternate between the distributions, so drift on a shared
    machine falls on both alike.
    """
    data = write_digits(work / "digits-data", repeat=_DIGITS_REPEAT)
    runnable = [d for d in distributions if d != "horovod" or _horovod_version() is not None]
    many = gpus or 2
    results: dict[str, Any] = {d: {} for d in runnable}
    for batch_size in batch_sizes:
        args = {"epochs": epochs, "batch_size": batch_size}
        for distribution in runnable:
            run = f"{distribution}-b{batch_size}"
            one = _launch(distribution, 1, data, work / f"{run}-1", args, cores=None if gpus else [0])
            several = _launch(distribution, many, data, work / f"{run}-{many}", args, cores=None if gpus else [0, 1])
            rates = {"1": round(one), str(many): round(several)}
            if not gpus:  # for context: one process with every core as threads
                rates["1_on_all_cores"] = round(_launch(distribution, 1, data, work / f"{run}-all", args, cores=None))
            results[distribution][str(batch_size)] = {
                "samples_per_second": rates,
                "efficiency": round(several / (many * one), 3),
            }
    return {
        "data": f"digits (1x8x8) x {_DIGITS_REPEAT}",
        "processes": [1, many],
        "epochs": epochs,
        "by_distribution_and_batch_size_per_process": results,
        "skipped": {d: "not installed" for d in distributions if d not in runnable},
        "target": 0.7,
    }


def cache_speedup(work: Path) -> dict[str, Any]:
    """The first load of a generated image folder (decode and cache it) against later ones (the cache).

    Keyed by a snapshot id, as the control plane runs it, a later load only reads the cache
    file; without one, it also lists and stats every file to build the key.
    """
    from trainer.cache import DataCache
    from trainer.data import load

    data = write_image_folder(work / "images-data", count=_CACHE_IMAGES, size=_IMAGE_SIZE)
    cache = DataCache(work / "cache")

    def seconds(snapshot_id: str | None) -> tuple[float, float]:
        first = load(data, cache=cache, snapshot_id=snapshot_id, image_size=_IMAGE_SIZE)
        again = load(data, cache=cache, snapshot_id=snapshot_id, image_size=_IMAGE_SIZE)
        assert not first.from_cache and again.from_cache, "the second load must come from the cache"
        return first.seconds, again.seconds

    decode, cached = seconds("snap-bench")
    _, listed = seconds(None)
    return {
        "images": _CACHE_IMAGES,
        "image_size": _IMAGE_SIZE,
        "decode_seconds": round(decode, 4),
        "cached_seconds": round(cached, 4),
        "speedup": round(decode / cached, 1),
        "cached_seconds_without_snapshot_id": round(listed, 4),
        "speedup_without_snapshot_id": round(decode / listed, 1),
        "target": 5.0,
    }


def trainer_vs_plain(work: Path, *, epochs: int) -> dict[str, Any]:
    """The trainer at world size 1 against a plain PyTorch loop: same model, data, batch and device."""
    from trainer import train
    from trainer.cache import DataCache
    from trainer.data import load, split

    gpu = torch.cuda.is_available()
    # A GPU needs enough work per step to be measured; a CPU gets a smaller set so the run stays short.
    count, size, batch_size = (50_000, 64, 256) if gpu else (4_000, 16, 64)
    data = write_image_folder(work / "compare-data", count=count, size=size)
    cache_dir = work / "compare-cache"
    args = {"epochs": epochs, "batch_size": batch_size, "image_size": size}
    rates: dict[str, list[float]] = {"trainer": [], "plain": []}

    def run_trainer(round_: int) -> list[float]:
        out = work / f"compare-out-{round_}"
        argv = ["--data-dir", str(data), "--output-dir", str(out), "--cache-dir", str(cache_dir)]
        argv += ["--distribution", "pytorch"]  # a group of one, whatever is installed
        with contextlib.redirect_stdout(sys.stderr):  # stdout is this report's; the trainer's log goes beside it
            code = train.main([*argv, "--args-json", json.dumps(args)])
        assert code == 0, f"the trainer exited with {code}"
        return _epoch_rates(out)

    def run_plain(round_: int) -> list[float]:
        loaded = load(data, cache=DataCache(cache_dir), snapshot_id=None, image_size=size)
        return plain_loop(loaded.dataset, split(loaded.dataset), epochs=epochs, batch_size=batch_size)[1:]

    # Interleaved, first one then the other going first: drift on the machine, and whatever
    # favours the first or second of a pair, falls on both alike.
    for round_ in range(_COMPARE_ROUNDS):
        order = [("trainer", run_trainer), ("plain", run_plain)]
        for name, measure in order if round_ % 2 == 0 else reversed(order):
            rates[name] += measure(round_)
    trainer_rates, plain_rates = rates["trainer"], rates["plain"]
    trainer_rate, plain_rate = statistics.median(trainer_rates), statistics.median(plain_rates)
    return {
        "device": torch.cuda.get_device_name() if gpu else "cpu",
        "data": f"{count} generated images, 3x{size}x{size}",
        "batch_size": batch_size,
        "epochs": epochs,
        "trainer_samples_per_second": round(trainer_rate),
        "plain_samples_per_second": round(plain_rate),
        "ratio": round(trainer_rate / plain_rate, 3),
        "target": 0.95,
    }


def plain_loop(dataset: Any, splits: Any, *, epochs: int, batch_size: int) -> list[float]:
    """The textbook single-process loop on the trainer's model and data; samples/s per epoch."""
    from trainer.model import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(dataset.input_shape, len(dataset.classes)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    images, labels = splits.train.images, splits.train.labels
    rates = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(labels))
        started = time.perf_counter()
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            x, y = images[index], labels[index]
            if device.type == "cuda":
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(device, non_blocking=True).float().div_(255), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(len(order) / (time.perf_counter() - started))
    return rates


def write_digits(dest: Path, *, repeat: int) -> Path:
    """The digits data set, `repeat` times over, as a `digits.npz` under `dest`."""
    from trainer.digits import export_digits

    path = export_digits(dest / "digits")
    with np.load(path) as npz:
        images, labels = npz["images"], npz["labels"]
    np.savez(path, images=np.tile(images, (repeat, 1, 1)), labels=np.tile(labels, repeat))
    return dest


def write_image_folder(dest: Path, *, count: int, size: int, classes: int = 10) -> Path:
    """`count` random-noise PNGs, `size` x `size`, in `classes` class folders: decoding work, not learning."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = dest / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:06d}.png")
    return dest


def _launch(
    distribution: str, processes: int, data: Path, out: Path, args: dict[str, Any], cores: list[int] | None
) -> float:
    """Median samples/s over the epochs after the first of one launch, as the local backend launches, on `cores`."""
    launcher = LAUNCHERS[distribution]  # type: ignore[index]  # one of the names the CLI was given
    command = [
        *launcher.argv(Path(sys.executable), processes),
        sys.executable, "-m", "trainer.train", "--distribution", distribution, "--data-dir", str(data),
        "--output-dir", str(out), "--cache-dir", str(out.parent / "cache"), "--args-json", json.dumps(args),
    ]  # fmt: skip
    # The affinity is inherited by every process the launcher starts, and the trainer sizes its threads to it.
    restrict: Callable[[], None] | None = (lambda: os.sched_setaffinity(0, cores)) if cores is not None else None
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=restrict,
        env={**os.environ, **launcher.env},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{distribution}, {processes} process(es), failed:\n{result.stdout}\n{result.stderr}")
    return statistics.median(_epoch_rates(out))


def _epoch_rates(out: Path) -> list[float]:
    """samples/s of every epoch after the first (the warm-up), from the trainer's metrics.jsonl in `out`."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [float(json.loads(line)["samples_per_second"]) for line in lines[1:]]


def _horovod_version() -> str | None:
    """Horovod's version, or None where it is not installed."""
    try:
        import horovod
    except ImportError:
        return None
    return str(horovod.__version__)


if __name__ == "__main__":
    sys.exit(main())

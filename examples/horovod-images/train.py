"""A Horovod trainer for aztrain: a small CNN on an image folder (`<class>/<image>.png`), written to docs/trainer.md.

    horovodrun -np 2 python train.py --epochs 8 --lr 0.01    # aztrain launches it like this

Every process reads the data, trains on its shard and averages gradients with Horovod; rank 0 writes the outputs.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import horovod.torch as hvd
import numpy as np
import torch
from PIL import Image
from torch import nn

DATA = Path(os.environ.get("AZTRAIN_DATA_DIR", "data"))
OUT = Path(os.environ.get("AZTRAIN_OUTPUT_DIR", "outputs"))
PREEMPTED = 75
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))


def read_images(size: int) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Every PNG/JPEG under the data folder, labelled by its folder's name: pixels, labels, classes, files."""
    files = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        sys.exit(f"error: no images under {DATA}")
    classes = sorted({p.parent.name for p in files})
    pixels = [np.asarray(Image.open(p).convert("RGB").resize((size, size)), np.float32) / 255 for p in files]
    labels = [classes.index(p.parent.name) for p in files]
    names = [p.relative_to(DATA).as_posix() for p in files]
    return torch.tensor(np.stack(pixels)).permute(0, 3, 1, 2), torch.tensor(labels), classes, names


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    hvd.init()
    x, y, classes, names = read_images(args.size)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                          nn.Linear(8 * 16, len(classes)))  # fmt: skip
    optimizer = hvd.DistributedOptimizer(torch.optim.SGD(model.parameters(), lr=args.lr * hvd.size(), momentum=0.9),
                                         named_parameters=model.named_parameters())  # fmt: skip
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)  # every rank starts from rank 0's weights
    mine = torch.arange(hvd.rank(), len(y), hvd.size())  # this rank's shard
    history = []
    for epoch in range(1, args.epochs + 1):
        for batch in mine[torch.randperm(len(mine))].split(16):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()  # Horovod averages the gradients of every rank here
        with torch.no_grad():
            loss = nn.functional.cross_entropy(model(x), y).item()
            accuracy = (model(x).argmax(1) == y).float().mean().item()
        history.append({"epoch": epoch, "loss": loss, "accuracy": accuracy})
        if hvd.rank() == 0:  # live metrics come from rank 0 alone
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
            print(f"epoch {epoch}/{args.epochs} loss={loss:.4f} accuracy={accuracy:.4f}", flush=True)
        # All ranks stop together. No checkpoint here, so a next attempt starts over (pytorch-csv resumes).
        if hvd.allreduce(torch.tensor(len(stopping)), op=hvd.Max, name="stop").item():
            return PREEMPTED
    if hvd.rank() == 0:
        (OUT / "data_files.json").write_text(json.dumps({"files": names, "samples": {"images": len(names)}}))
        torch.save({"state_dict": model.state_dict(), "classes": classes}, OUT / "model.pt")
        final = {"accuracy": accuracy, "loss": loss, "samples": len(y), "world_size": hvd.size()}
        (OUT / "metrics.json").write_text(json.dumps(final))
    return 0


if __name__ == "__main__":
    sys.exit(main())

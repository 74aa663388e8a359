"""A plain PyTorch trainer for aztrain: a small MLP on CSV rows (`x1,...,xn,label`), written to docs/trainer.md.

    python train.py --epochs 30 --lr 0.1 --hidden 32    # aztrain passes trainer.args like this

Where the data, outputs and checkpoints are arrives in environment variables; nothing here imports aztrain.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

DATA = Path(os.environ.get("AZTRAIN_DATA_DIR", "data"))
OUT = Path(os.environ.get("AZTRAIN_OUTPUT_DIR", "outputs"))
CHECKPOINT = Path(os.environ.get("AZTRAIN_CHECKPOINT_DIR", OUT / "checkpoints")) / "last.pt"
PREEMPTED = 75  # the contract's "preempted: run me again and I resume"
stopping = []  # SIGTERM is the warning that this node is about to be taken away
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))


def read_csv() -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """Every .csv under the data folder (one header line each): features, labels, and the rows of each file."""
    rows, counts = [], {}
    for path in sorted(DATA.rglob("*.csv")):
        lines = [line.split(",") for line in path.read_text().splitlines()[1:] if line.strip()]
        rows += lines
        counts[path.relative_to(DATA).as_posix()] = len(lines)
    if not rows:
        sys.exit(f"error: no CSV rows under {DATA}")
    table = torch.tensor([[float(value) for value in row] for row in rows])
    return table[:, :-1], table[:, -1].long(), counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args()
    x, y, counts = read_csv()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "data_files.json").write_text(json.dumps({"files": list(counts), "samples": counts}))
    print(f"data: {len(y)} rows from {counts}", flush=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(x.shape[1], args.hidden), nn.ReLU(), nn.Linear(args.hidden, int(y.max()) + 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history: list[dict[str, float]] = []
    if CHECKPOINT.exists():  # an attempt after a preemption resumes where the last one stopped
        state = torch.load(CHECKPOINT, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = json.loads(state["history"])
    for epoch in range(len(history) + 1, args.epochs + 1):
        loss = nn.functional.cross_entropy(model(x), y)  # the table is small: one batch an epoch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = (model(x).argmax(1) == y).float().mean().item()
        history.append({"epoch": epoch, "loss": loss.item(), "accuracy": accuracy})
        (OUT / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
        CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": json.dumps(history)}
        torch.save(state, CHECKPOINT)
        if stopping:
            return PREEMPTED
    torch.save(model.state_dict(), OUT / "model.pt")
    final = {"accuracy": history[-1]["accuracy"], "loss": history[-1]["loss"], "samples": len(y)}
    (OUT / "metrics.json").write_text(json.dumps(final))  # last: the model beside it is complete
    print(f"trained: {final}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

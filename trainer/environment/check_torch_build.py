"""Fail the image build unless torch can run the trainer's PyTorch DDP jobs (`trainer.distribution: pytorch`).

The cu128 wheels carry NCCL and Gloo, but a CPU-only wheel (a changed index URL, a resolver
that picked another build) would install and import just as quietly. This asks torch itself and
exits 1 naming what is missing:

- CUDA:  GPU tensors at all;
- NCCL:  DistributedDataParallel's gradient allreduce on the GPUs;
- Gloo:  the collectives on CPU tensors (preemption flag, test counts, pickled objects);
- torchrun: the launcher (beside this Python), for code that starts its own processes per node.

Azure ML's PyTorchDistribution starts `process_count_per_instance` processes per node itself and
sets their `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `NODE_RANK`.
The Dockerfile runs it beside the Horovod check, with the same CUDA driver stubs on the loader path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType


def _probes(torch: ModuleType) -> dict[str, tuple[Callable[[], bool], str]]:
    """What must be there → how torch says so, and why aztrain needs it."""
    distributed = torch.distributed
    return {
        "CUDA": (torch.backends.cuda.is_built, "GPU tensors at all"),
        "NCCL": (lambda: distributed.is_available() and distributed.is_nccl_available(), "DDP's allreduce on GPUs"),
        "Gloo": (lambda: distributed.is_available() and distributed.is_gloo_available(), "collectives on CPU tensors"),
        "torchrun": (lambda: (Path(sys.executable).parent / "torchrun").is_file(), "starting a node's processes"),
    }


def missing(torch: ModuleType) -> list[str]:
    """The features this torch lacks, in the order above."""
    return [feature for feature, (present, _) in _probes(torch).items() if not present()]


def main() -> int:
    import torch

    probes = _probes(torch)
    absent = missing(torch)
    if absent:
        for feature in absent:
            print(f"torch {torch.__version__} lacks {feature}: needed for {probes[feature][1]}", file=sys.stderr)
        print("Install a CUDA build of torch (conda.yaml's cu128 index)", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__} build check passed: " + ", ".join(probes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

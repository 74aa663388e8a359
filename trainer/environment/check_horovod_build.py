"""Fail the image build unless Horovod was built with what aztrain's Azure ML jobs need.

`horovodrun --check-build` prints which frameworks, controllers and tensor operations Horovod was
built with, but exits 0 whatever it finds, so a Horovod that silently fell back to a CPU-only or
Gloo-only build would pass it. This asks the built library itself (the `*_built()` probes that
`horovod.torch` exports from `horovod.common.basics.HorovodBasics`) and exits 1 naming what is
missing:

- MPI:  Azure ML's `MpiDistribution` starts the ranks with `mpirun` (the MPI controller);
- NCCL: GPU allreduce (HOROVOD_GPU_OPERATIONS=NCCL);
- CUDA: GPU tensors at all;
- Gloo: `horovodrun --gloo`, as the local backend runs the same trainer.

The Dockerfile runs it right after `pip install` of Horovod, with the CUDA driver stubs on the
loader path (the build machine has no GPU driver), as upstream's docker/horovod/Dockerfile does for
its `import horovod.torch` checks.
"""

from __future__ import annotations

import sys
from types import ModuleType

#: What must be built in → the `horovod.torch` probe that says so, and why aztrain needs it.
REQUIRED: dict[str, tuple[str, str]] = {
    "MPI": ("mpi_built", "Azure ML's MpiDistribution, which starts the ranks with mpirun"),
    "NCCL": ("nccl_built", "allreduce on the GPUs (HOROVOD_GPU_OPERATIONS=NCCL)"),
    "CUDA": ("cuda_built", "GPU tensors at all"),
    "Gloo": ("gloo_built", "`horovodrun --gloo`, as the local backend runs the same trainer"),
}


def missing(hvd: ModuleType) -> list[str]:
    """The REQUIRED features this Horovod build lacks (`nccl_built()` returns NCCL's version code, 0 if absent)."""
    return [feature for feature, (probe, _) in REQUIRED.items() if not getattr(hvd, probe)()]


def main() -> int:
    import horovod.torch as hvd  # the extension library: fails here if it was not built for torch

    absent = missing(hvd)
    if absent:
        for feature in absent:
            print(f"Horovod was built without {feature}: needed for {REQUIRED[feature][1]}", file=sys.stderr)
        print("Rebuild with HOROVOD_WITH_MPI=1 HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_WITH_GLOO=1", file=sys.stderr)
        return 1
    print("Horovod build check passed: " + ", ".join(REQUIRED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
